"""The one error type users see: a single line, exit code 2, no traceback."""


class TaperError(Exception):
    """Bad input or a failed step, explained in one line.

    The message names the file, node or field and what was expected; the CLI prints it as
    ``taper: error: <message>`` and exits with code 2.
    """

    exit_code = 2
