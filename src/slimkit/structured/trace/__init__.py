"""Graph capture and channel propagation: from an nn.Module to per-tensor channel ids.

`capture` turns the model into a shape-annotated graph; `ChannelPropagator` walks it, asking the
registry (`registry`) for the handler of each op; `ops` holds the built-in handlers by op family.
"""
