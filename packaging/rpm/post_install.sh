/usr/libexec/qumulo-audit-broker/setup-dirs || :
systemctl try-restart rsyslog.service >/dev/null 2>&1 || :
