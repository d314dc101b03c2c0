"""What the parsers may hand the store: the longest each bounded text field is, and no NUL.

Declared once, here: the parsers keep within these lengths and `app/db/models.py` sizes its
String(n) columns from them, so a frame the parsers accept is a row the database accepts
(PostgreSQL refuses an over-long value and any NUL in text, and then the whole batch with it).
What the parsers do at a limit is theirs to say (parsers/syslog.py, parsers/pexip.py); the raw
frame is stored byte for byte whatever they do.
"""

from typing import Final

# The syslog header's fields: HOSTNAME and the format are stored in `messages`, the others
# only read from the frame, and these bound what the parser accepts as each. HOSTNAME,
# PROCID and MSGID are RFC 5424's own limits; APP_NAME also holds an RFC 3164 TAG, so it is
# wider than RFC 5424's 48.
HOSTNAME_MAX: Final = 255
APP_NAME_MAX: Final = 64
PROCID_MAX: Final = 128
MSGID_MAX: Final = 32
TIMESTAMP_TEXT_MAX: Final = 64
FORMAT_MAX: Final = 8

# Bounded keys of a Pexip body: Participant-id is stored in `events`; a Level or Name as
# long is no real one.
LEVEL_MAX: Final = 16
NAME_MAX: Final = 128
PARTICIPANT_ID_MAX: Final = 128

# What a NUL in stored text becomes: PostgreSQL text cannot hold NUL. The same character that
# stands for undecodable bytes; the raw frame keeps the original.
NUL_REPLACEMENT: Final = "\ufffd"
