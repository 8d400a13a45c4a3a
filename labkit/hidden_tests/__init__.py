"""Hidden tests, one module per exercise (`TESTS = (...)`): `labkit grade --hidden` runs them; no handout holds them."""
