complete -c ipmpstat -s o -d 'Show only these fields, in this order (\'all\' for every field)' -r
complete -c ipmpstat -l socket -d 'ipmpd\'s control socket' -r -F
complete -c ipmpstat -s a -d 'Data addresses: state, group, inbound (bound) and outbound interfaces'
complete -c ipmpstat -s g -d 'Groups: state, failure detection time, member interfaces'
complete -c ipmpstat -s i -d 'Member interfaces: active, flags, link, probe and overall state'
complete -c ipmpstat -s p -d 'Probes as they complete, streamed until interrupted (TIME is relative to ipmpstat\'s start)'
complete -c ipmpstat -s t -d 'Probe mode, test address and probe targets per interface'
complete -c ipmpstat -s n -d 'Show numeric addresses (no host name lookup)'
complete -c ipmpstat -s P -d 'Parsable output: no header, \':\' between fields, \':\' and \'\\\' escaped; needs -o (not \'all\')'
complete -c ipmpstat -l json -d 'Print this mode\'s part of ipmpd\'s snapshot as JSON (addresses numeric)'
complete -c ipmpstat -s h -l help -d 'Print help'
complete -c ipmpstat -s V -l version -d 'Print version'
