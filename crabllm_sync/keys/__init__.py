"""Virtual keys: model.py (secrets, hashes, request bodies, records),
store.py (the KeyStore: create, list, update, revoke, look up) and cli.py
(`crabllm-sync keys ...` and `crabllm-sync usage`). Who may call with a key is
decided in auth.py."""
