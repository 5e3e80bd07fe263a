#!/bin/sh
# /usr/bin/qumulo-audit-broker: the command line (check, convert, ...) of the
# binary rsyslog runs from /usr/libexec/rsyslog/qumulo-audit-broker.
exec /usr/libexec/rsyslog/qumulo-audit-broker "$@"
