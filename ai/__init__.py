"""Language-model providers and the router that picks, retries and falls back.

The embedded default is `offline_writer`: a deterministic course writer that needs no network.

With `COURSEGEN_MODELS` set, `routed_writer.build_writer` returns `RoutedCourseWriter`, which
writes through `router.Router` over OpenAI-compatible endpoints. The modules, top down:
- `routed_writer`: prompts (user text quoted as data), `RoutedCourseWriter`, `build_writer`;
- `router`: one call = one deadline and one attempt budget; decides retry/switch/give up;
- `selection`, `scoring`: which model next (filters, then quality/cost/latency/errors);
- `attempt`: one attempt (breaker admission, budget reservation, request, billing, caching);
- `upstream`: the `openai` client call, streaming timeouts, error classification;
- `breaker`, `budget`, `response_cache` (+ coalescing), `health`: state, in-process or Redis;
- `json_output`: local repair and validation; `pricing`: tokens and costs; `config`: the
  settings schema; `errors`: typed errors with stable codes.
"""
