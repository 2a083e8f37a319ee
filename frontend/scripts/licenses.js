// Writes static/vendor/codemirror/LICENSE: the licence text of every npm
// package that ends up in the bundle (all dependencies, not devDependencies).
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const lock = JSON.parse(fs.readFileSync(path.join(root, "package-lock.json"), "utf8"));
const out = path.resolve(root, "../static/vendor/codemirror/LICENSE");

const parts = [
  "sluice-editor.js bundles the following npm packages. Their licence texts follow.\n",
];
const names = Object.keys(lock.packages)
  .filter((p) => p.startsWith("node_modules/") && !lock.packages[p].dev)
  .sort();
for (const p of names) {
  const dir = path.join(root, p);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  const file = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  if (!file) throw new Error("no licence file in " + p);
  const text = fs.readFileSync(path.join(dir, file), "utf8").trim();
  parts.push(
    "=".repeat(72) + "\n" + meta.name + "@" + meta.version + " (" + meta.license + ")\n" +
    "=".repeat(72) + "\n" + text + "\n"
  );
}
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, parts.join("\n"));
console.log("wrote " + path.relative(process.cwd(), out) + " (" + names.length + " packages)");
