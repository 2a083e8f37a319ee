"""The "Try it" panel on a function's page: what the page itself offers (the browser tests run it)."""

from __future__ import annotations

import html

from tests.factories import PIPE, make_function, source

MANIFOLD = source(
    '''
    """
    title: Two Models
    """

    from pydantic import BaseModel


    class Pipe:
        class Valves(BaseModel):
            prefix: str = "m"

        def __init__(self):
            self.valves = self.Valves()

        def pipes(self):
            return [{"id": self.valves.prefix + "-small", "name": "Small"}, {"id": self.valves.prefix + "-large", "name": "Large"}]

        def pipe(self, body: dict) -> str:
            return body["model"]
    '''
)


def test_a_manifolds_sub_pipes_are_offered_to_choose_from(app, admin_client, admin_id):
    make_function(app, admin_id, "two", MANIFOLD)

    page = html.unescape(admin_client.get("/admin/functions/edit?id=two").get_data(as_text=True))

    assert 'list="try-sub-choices"' in page
    assert '<option value="m-small">Small</option>' in page
    assert '<option value="m-large">Large</option>' in page
    assert "the saved code offers m-small, m-large" in page


def test_a_plain_pipe_offers_no_sub_pipes_and_the_field_still_takes_any(app, admin_client, admin_id):
    make_function(app, admin_id, "plain", PIPE)

    page = admin_client.get("/admin/functions/edit?id=plain").get_data(as_text=True)

    assert 'id="try-sub"' in page
    assert "try-sub-choices" not in page
