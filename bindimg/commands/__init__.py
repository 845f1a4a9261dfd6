"""One module per subcommand (`add`, `lock`, `lint`, `list`, `store`): each takes plain values,
does its own loading, and returns what the CLI formats; failures are raised, never printed."""
