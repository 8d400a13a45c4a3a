"""Exercise definitions (task, stub, visible tests); one module per exercise. Solutions live in labkit.solutions."""
