complete -c ipmpd -s c -l config -d 'Configuration file (TOML; see config/ipmpd.toml in the source for every key)' -r -F
complete -c ipmpd -l pin-dir -d 'bpffs directory for the pinned maps and program links' -r -F
complete -c ipmpd -l proc-sys-net -d 'Where the network sysctls are (the members\' arp_ignore, arp_announce, accept_ra; the IPMP interface\'s forwarding). In a container whose /proc/sys is read-only, mount the host\'s /proc/sys/net writable elsewhere and name it here' -r -F
complete -c ipmpd -l check -d 'Check the configuration and exit'
complete -c ipmpd -l cleanup -d 'Remove everything ipmpd set up (IPMP interfaces of the config, pinned programs, links and maps) and exit. Forwarding through the groups stops'
complete -c ipmpd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipmpd -s V -l version -d 'Print version'
