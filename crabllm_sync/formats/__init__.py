"""Client-facing formats, one module each: the pure translation between a
format's wire and the canonical (OpenAI chat) request, answer and stream.

A format module gives the pipeline two small objects per streamed request:

- an observer (pipeline.relay.Observer) that watches the upstream items the
  one relay passes on: it keeps ctx.usage, rewrites or drops an item, tells a
  stream that ended early from one that finished, and says whether an item
  in the stream was itself the failure (an Anthropic `error` event);
- an encoder (views.streaming.Encoder) that turns a batch of relayed items into
  the bytes of the client's format, and an error into the format's last event.

Adding a format is one module here and one thin view; the pipeline does not
change. Whether a deployment takes a format as-is (no translation) is declared
by its adapter (providers.native_formats), not decided here.
"""
