"""The HTTP service behind ``python -m pipelines.serve``.

One module each: ``app`` (routes and the model's lifecycle), ``auth`` (API
keys: the key file, the Bearer check, the bind rule), ``batcher`` (the
micro-batcher that groups concurrent requests into one model call), ``input``
(request parsing and its errors), ``metrics`` (Prometheus counters and the
access log), ``openapi`` (the schema and ``/docs``), ``page`` (the page at
``/``), ``protocol`` (the HTTP protocol with Nagle off) and ``workers``
(several processes on one port). Nothing here loads at ``import pipelines``:
the command imports what it needs when it starts.
"""
