import pytest

# the shared assertion helpers explain a failure as a test's own assert does
pytest.register_assert_rewrite("tests.cli_uploads")
