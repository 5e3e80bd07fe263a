systemctl try-restart rsyslog.service >/dev/null 2>&1 || :
