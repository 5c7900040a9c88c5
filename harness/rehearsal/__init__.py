"""The rehearsal: a config's whole run against a built-in simulated OpenAI-compatible world on 127.0.0.1.

    features     the task agent's accuracy model (prompt features -> P(right))
    answers      replies in each benchmark's answer format, right or wrong
    task_agent   finds the example a request asks about; token counts, truncation
    edits        the prompt agent's rewrites (add or drop features, pad)
    prompt_agent recognises each method's request and replies in its format
    server       one HTTP server per role; meter: requests in flight over time
    world        the index over every benchmark a run opens, and both servers
    estimate     what the real run will cost; rehearse: `sepo-bench rehearse`

Nothing the world returns is a result: `sepo-bench rehearse` marks its run `simulated`.
"""
