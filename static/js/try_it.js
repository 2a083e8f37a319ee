/* Sluice "Try it" panel on a function's page: runs the code in the editor (saved or not) with a chat body through
   POST /api/v1/functions/id/{id}/run as server-sent events, and shows the answer as it arrives (for filters the body
   before and after), the events as a timeline, the captured output, the time, and a failure's traceback with the
   failing line marked in the editor. Ctrl/Cmd+Enter runs from anywhere on the page. */
(function () {
  "use strict";

  var panel = document.getElementById("try-it");
  if (!panel || !window.fetch || !window.TextDecoder) return;
  var form = document.getElementById("try-it-form");
  var methodSelect = document.getElementById("try-method");
  var subInput = document.getElementById("try-sub");
  var bodyInput = document.getElementById("try-body");
  var bodyError = document.getElementById("try-body-error");
  var codeArea = document.getElementById("content");
  var functionId = panel.dataset.functionId;
  var functionType = panel.dataset.functionType;

  function q(name) { return panel.querySelector("[data-try-" + name + "]"); }
  var runButton = form.querySelector('button[type="submit"]');
  var stopButton = q("stop");
  var sampleButton = q("sample");
  var status = q("status");
  var results = q("results");
  var errorBox = q("error");
  var compare = q("compare");
  var textBox = q("text");
  var resultBox = q("result");
  var eventsList = q("events");
  var noEvents = q("no-events");
  var eventCount = q("event-count");
  var outputBox = q("output");
  var answerSection = q("answer");

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function editor() { return codeArea ? codeArea.sluiceEditor : null; }
  function code() {
    var current = editor();
    return current ? current.getValue() : (codeArea ? codeArea.value : "");
  }

  function pretty(value) { return JSON.stringify(value, null, 2); }

  // --- sample bodies, shaped as Open WebUI sends them for each method ------------------------------------------

  function randomId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return "id-" + Math.random().toString(16).slice(2) + Date.now().toString(16);
  }

  function modelId() {
    if (functionType !== "pipe") return "llama3.2:latest";
    var sub = subInput ? subInput.value.trim() : "";
    return sub ? functionId + "." + sub : functionId;
  }

  var QUESTION = "What is the tallest mountain in Europe?";
  var ANSWER = "Mount Elbrus, in the Caucasus, is the tallest at 5,642 m. If you count only the Alps, it is Mont Blanc (4,806 m).";

  function sample(method) {
    var chatId = randomId(), messageId = randomId(), sessionId = randomId();
    var now = Math.floor(Date.now() / 1000);
    var userMessage = { id: randomId(), role: "user", content: QUESTION, timestamp: now - 5 };
    var assistant = { id: messageId, role: "assistant", content: ANSWER, timestamp: now };
    if (method === "stream") {
      return {
        id: "chatcmpl-" + messageId.slice(0, 8), object: "chat.completion.chunk", created: now, model: modelId(),
        choices: [{ index: 0, delta: { content: "Mount Elbrus" }, logprobs: null, finish_reason: null }],
      };
    }
    if (method === "outlet" || method === "action") {
      return {
        model: modelId(),
        messages: [userMessage, assistant],
        chat_id: chatId,
        session_id: sessionId,
        id: messageId,
      };
    }
    return {
      model: modelId(),
      messages: [
        { role: "system", content: "You are a helpful assistant. Answer briefly." },
        { role: "user", content: QUESTION },
      ],
      stream: true,
      features: { web_search: false, image_generation: false, code_interpreter: false },
      metadata: {
        chat_id: chatId,
        message_id: messageId,
        session_id: sessionId,
        filter_ids: [],
        tool_ids: null,
        files: null,
        features: { web_search: false },
        variables: { "{{USER_NAME}}": "", "{{CURRENT_DATE}}": new Date().toISOString().slice(0, 10) },
      },
    };
  }

  var lastSample = "";
  function loadSample() {
    lastSample = pretty(sample(methodSelect.value));
    bodyInput.value = lastSample;
    showBodyError("");
  }
  // A body still as the page wrote it follows the method (and sub-pipe); one the admin edited stays theirs.
  function followSample() {
    if (bodyInput.value === lastSample || bodyInput.value.trim() === "") loadSample();
  }
  methodSelect.addEventListener("change", followSample);
  if (subInput) subInput.addEventListener("input", followSample);
  sampleButton.addEventListener("click", function () {
    loadSample();
    bodyInput.focus();
  });
  loadSample();

  function showBodyError(message) {
    bodyError.textContent = message;
    bodyError.hidden = !message;
    if (message) bodyInput.setAttribute("aria-invalid", "true");
    else bodyInput.removeAttribute("aria-invalid");
  }

  // --- showing a run -----------------------------------------------------------------------------------------------

  var started = 0;
  var controller = null;
  var streamedText = "";
  var streamedItems = [];
  var outputText = "";

  function reset(body) {
    results.hidden = false;
    answerSection.hidden = false;
    errorBox.hidden = true;
    compare.hidden = true;
    textBox.hidden = true;
    resultBox.hidden = true;
    textBox.textContent = "";
    resultBox.textContent = "";
    eventsList.textContent = "";
    noEvents.hidden = false;
    eventCount.textContent = "";
    outputBox.textContent = "";
    streamedText = "";
    streamedItems = [];
    outputText = "";
    var current = editor();
    if (current) current.clearErrors();
    q("before").textContent = pretty(body);
    q("after").textContent = "";
  }

  function summary(event) {
    var data = event && event.data;
    if (!data || typeof data !== "object") return data == null ? "" : String(data);
    if (typeof data.description === "string") return data.description + (data.done ? " (done)" : "");
    if (typeof data.content === "string") return data.content;
    if (data.source && data.source.name) return data.source.name;
    if (typeof data.title === "string") return data.title;
    return JSON.stringify(data).slice(0, 160);
  }

  function addEvent(event) {
    noEvents.hidden = true;
    var item = document.createElement("li");
    item.className = "try-event";
    var time = document.createElement("span");
    time.className = "try-event-time muted";
    time.textContent = "+" + Math.round(performance.now() - started) + " ms";
    var type = document.createElement("span");
    type.className = "badge";
    type.textContent = (event && event.type) || "event";
    var text = document.createElement("span");
    text.className = "try-event-text";
    text.textContent = summary(event);
    var details = document.createElement("details");
    var label = document.createElement("summary");
    label.textContent = "Data";
    var data = document.createElement("pre");
    data.className = "try-pre";
    data.textContent = pretty(event && event.data);
    details.append(label, data);
    item.append(time, " ", type, " ", text, details);
    eventsList.append(item);
    eventCount.textContent = "(" + eventsList.children.length + ")";
  }

  function addChunk(chunk) {
    textBox.hidden = false;
    streamedItems.push(chunk);
    if (chunk.type === "text") streamedText += chunk.value;
    else if (chunk.type === "json") {
      var choices = chunk.value && chunk.value.choices;
      var delta = choices && choices[0] && (choices[0].delta || choices[0].message);
      if (delta && typeof delta.content === "string") streamedText += delta.content;
      else streamedText += (streamedText && !/\n$/.test(streamedText) ? "\n" : "") + JSON.stringify(chunk.value) + "\n";
    } else streamedText += chunk.value + "\n";
    textBox.textContent = streamedText;
  }

  function addOutput(text) {
    outputText += text;
    outputBox.textContent = outputText;
  }

  /* Lines of the "after" body that the "before" body has not are marked, so a filter's change stands out. */
  function showAfter(before, after) {
    var beforeLines = {};
    pretty(before).split("\n").forEach(function (line) { beforeLines[line] = true; });
    var box = q("after");
    box.textContent = "";
    pretty(after).split("\n").forEach(function (line, index) {
      if (index) box.append("\n");
      if (beforeLines[line]) box.append(line);
      else {
        var mark = document.createElement("mark");
        mark.className = "try-changed";
        mark.textContent = line;
        box.append(mark);
      }
    });
  }

  function finish(method, body, frame, ms) {
    var seconds = typeof ms === "number" ? (ms < 1000 ? ms.toFixed(1) + " ms" : (ms / 1000).toFixed(2) + " s") : "";
    if (typeof frame.output === "string" && frame.output.length >= outputText.length) {
      outputText = frame.output;
      outputBox.textContent = outputText;
    }
    if (frame.error) {
      answerSection.hidden = !streamedItems.length;  // a pipe that failed midway keeps what it said
      showError(frame.error);
      status.textContent = "Failed after " + seconds + ": " + frame.error.type + ".";
      return;
    }
    var result = frame.result;
    if (method === "pipe") {
      textBox.hidden = false;
      if (!streamedItems.length && result != null) {
        resultBox.hidden = false;
        resultBox.textContent = pretty(result);
      }
      if (!streamedText) textBox.textContent = streamedItems.length ? "" : "(no text)";
    } else if (functionType === "filter" && result && typeof result === "object" && body && typeof body === "object") {
      compare.hidden = false;
      showAfter(body, result);
    } else {
      resultBox.hidden = false;
      resultBox.textContent = pretty(result);
    }
    status.textContent = "Ran " + method + " in " + seconds + ".";
  }

  function showError(error) {
    errorBox.hidden = false;
    q("error-title").textContent = error.type + ": " + error.message;
    q("traceback").textContent = error.traceback || error.message || "";
    var lineLink = q("error-line");
    var line = parseInt(error.line, 10);
    if (line > 0) {
      lineLink.hidden = false;
      lineLink.textContent = "Line " + line + (error.column ? ", column " + error.column : "");
      lineLink.dataset.line = String(line);
      lineLink.dataset.column = String(error.column || 1);
      var current = editor();
      if (current) current.markErrorLine(line, error.type + ": " + error.message);
    } else {
      lineLink.hidden = true;
    }
  }

  /* "Line N" brings the editor to the failing line and gives it the focus. */
  q("error-line").addEventListener("click", function (event) {
    var current = editor();
    if (!current) return;
    event.preventDefault();
    var doc = current.view.state.doc;
    var line = doc.line(Math.min(Math.max(parseInt(this.dataset.line, 10) || 1, 1), doc.lines));
    var column = parseInt(this.dataset.column, 10) || 1;
    current.view.dispatch({ selection: { anchor: line.from + Math.min(column - 1, line.length) }, scrollIntoView: true });
    current.focus();
  });

  function describeFailure(response, body) {
    if (response.status === 401) return "You are signed out, or your account may not run code; sign in again.";
    if (response.status === 404) return "This function no longer exists.";
    var detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map(function (e) { return (e.loc || []).slice(1).join(".") + ": " + e.msg; }).join("; ");
    var retry = response.headers.get("Retry-After");
    return (detail || "The run failed (" + response.status + ").") + (retry ? " Try again in " + retry + " s." : "");
  }

  // --- running -----------------------------------------------------------------------------------------------------

  function setRunning(running) {
    runButton.disabled = running;
    stopButton.hidden = !running;
    panel.setAttribute("aria-busy", running ? "true" : "false");
  }

  function parseFrame(block) {
    var name = "message", data = "";
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data += line.slice(5).replace(/^ /, "");
    });
    try {
      return { name: name, data: data ? JSON.parse(data) : null };
    } catch (err) {
      return null;
    }
  }

  function run() {
    if (controller) return;
    var body;
    try {
      body = JSON.parse(bodyInput.value);
    } catch (err) {
      showBodyError("The body is not valid JSON: " + err.message);
      bodyInput.focus();
      return;
    }
    if (!body || typeof body !== "object" || Array.isArray(body)) {
      showBodyError("The body must be a JSON object.");
      bodyInput.focus();
      return;
    }
    showBodyError("");
    var method = methodSelect.value;
    var payload = { method: method, body: body, stream: true, content: code() };
    var sub = subInput ? subInput.value.trim() : "";
    if (sub) payload.sub = sub;
    reset(body);
    status.textContent = "Running " + method + "…";
    setRunning(true);
    controller = new AbortController();
    started = performance.now();
    var finished = false;
    fetch(panel.dataset.runUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "text/event-stream" },
      body: JSON.stringify(payload),
      signal: controller.signal,
    })
      .then(function (response) {
        if (!response.ok) {
          return response.json().catch(function () { return null; }).then(function (answer) {
            finished = true;
            results.hidden = true;
            status.textContent = describeFailure(response, answer);
          });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function handle(frame) {
          if (!frame) return;
          var data = frame.data || {};
          if (frame.name === "event") addEvent(data);
          else if (frame.name === "chunk") addChunk(data);
          else if (frame.name === "output") addOutput(data.text || "");
          else if (frame.name === "done" || frame.name === "error") {
            finished = true;
            finish(method, body, data, data.ms);
          }
        }
        function pump() {
          return reader.read().then(function (part) {
            if (part.done) {
              buffer += decoder.decode();
              if (buffer.trim()) handle(parseFrame(buffer.replace(/\r\n/g, "\n").trim()));
              return;
            }
            buffer += decoder.decode(part.value, { stream: true }).replace(/\r\n/g, "\n");
            var end;
            while ((end = buffer.indexOf("\n\n")) !== -1) {
              handle(parseFrame(buffer.slice(0, end)));
              buffer = buffer.slice(end + 2);
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function (err) {
        if (err && err.name === "AbortError") {
          finished = true;
          status.textContent = "Stopped.";
        } else {
          status.textContent = "The run could not be sent: " + (err && err.message ? err.message : err);
          finished = true;
        }
      })
      .then(function () {
        if (!finished) status.textContent = "The answer ended early.";
        controller = null;
        setRunning(false);
        if (focusRunWhenDone) {
          focusRunWhenDone = false;
          runButton.focus();
        }
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    run();
  });
  /* Stop hides itself once the run has ended; the focus then goes to Run (enabled again by then), not to the page. */
  var focusRunWhenDone = false;
  stopButton.addEventListener("click", function () {
    focusRunWhenDone = true;
    if (controller) controller.abort();
  });

  /* Ctrl/Cmd+Enter runs from anywhere on the page, the code editor included (before its own binding). */
  document.addEventListener(
    "keydown",
    function (event) {
      if (!(event.ctrlKey || event.metaKey) || event.altKey || event.shiftKey || event.key !== "Enter") return;
      event.preventDefault();
      event.stopPropagation();
      run();
    },
    true
  );
})();
