# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ipmpadm_global_optspecs
    string join \n socket= h/help V/version
end

function __fish_ipmpadm_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ipmpadm_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ipmpadm_using_subcommand
    set -l cmd (__fish_ipmpadm_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -l socket -d 'ipmpd\'s control socket' -r -F
complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -s h -l help -d 'Print help'
complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -s V -l version -d 'Print version'
complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -f -a "status" -d 'Summarize groups, members, buckets and data addresses'
complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -f -a "offline" -d 'Take a member out of service; its traffic moves to the other members (if_mpadm -d)'
complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -f -a "online" -d 'Put an offlined member back in service (if_mpadm -r)'
complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -f -a "reload" -d 'Make ipmpd reread its configuration'
complete -c ipmpadm -n "__fish_ipmpadm_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand status" -l socket -d 'ipmpd\'s control socket' -r -F
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand status" -l json -d 'Print ipmpd\'s full snapshot as JSON'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand status" -s h -l help -d 'Print help'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand offline" -l socket -d 'ipmpd\'s control socket' -r -F
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand offline" -s h -l help -d 'Print help'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand online" -l socket -d 'ipmpd\'s control socket' -r -F
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand online" -s h -l help -d 'Print help'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand reload" -l socket -d 'ipmpd\'s control socket' -r -F
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand reload" -s h -l help -d 'Print help'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand help; and not __fish_seen_subcommand_from status offline online reload help" -f -a "status" -d 'Summarize groups, members, buckets and data addresses'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand help; and not __fish_seen_subcommand_from status offline online reload help" -f -a "offline" -d 'Take a member out of service; its traffic moves to the other members (if_mpadm -d)'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand help; and not __fish_seen_subcommand_from status offline online reload help" -f -a "online" -d 'Put an offlined member back in service (if_mpadm -r)'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand help; and not __fish_seen_subcommand_from status offline online reload help" -f -a "reload" -d 'Make ipmpd reread its configuration'
complete -c ipmpadm -n "__fish_ipmpadm_using_subcommand help; and not __fish_seen_subcommand_from status offline online reload help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
