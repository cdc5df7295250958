"""ShareHub's spine: configuration, the `sharehub` command, the embedded dev stack, security
primitives (passwords, tokens) and the user-facing actions that the gateway and CLI share.

Entity actors live in `actors/`, HTTP and websockets in `gateway/`, SQL in `storage/`."""
