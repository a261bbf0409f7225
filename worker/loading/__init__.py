"""Safe checkpoint intake: format detection, the architecture registry, hostile-file checks."""
