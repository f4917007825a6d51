"""Limits of the domain. Upstream's (255-character strings, 5,000 messages) plus bounds on list
sizes that upstream left open, so that one request or one aggregate cannot exhaust memory."""

TITLE_MAX_LENGTH = 255
REMARKS_MAX_LENGTH = 255
TEXT_MAX_LENGTH = 255
MESSAGES_LIMIT = 5000  # live messages per thread (upstream MessagesLimit)
IDS_PER_REQUEST_LIMIT = 1000  # ids in one join/leave/remove request
MESSAGES_PER_REQUEST_LIMIT = 1000
ADMINISTRATORS_LIMIT = 1000  # administrators per thread
MEMBERS_LIMIT = 10000  # members per thread
