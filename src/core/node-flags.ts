/**
 * V8 flags for our processes that stream request bodies (the node's /app proxy, runners).
 *
 * Streaming 1 MiB bodies allocates buffers fast; with the node's modules loaded, the old
 * generation sits near V8's small starting limit and major GCs ran 7–10 times as often as in
 * a bare proxy (56 vs 8 per benchmark round), costing ~20% CPU per request. Starting the old
 * generation at 64 MiB removes them (0 major GCs in the same round), measured with
 * bench:runtime's proxy section.
 */
export const streamingProcessFlags: readonly string[] = ["--initial-old-space-size=64"];
