"""Security primitives with no I/O of their own: password hashing and policy, JWT signing keys and
token encoding/verification. The gateway and the CLI build on these."""
