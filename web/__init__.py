"""The web plumbing the blueprints stand on: access checks, error answers, security headers, navigation and
template helpers, the valves form the pages share, and the JSON API's route registry and OpenAPI document."""
