# bash completion for the stdpkt commands: `source scripts/stdpkt-completion.bash`, or copy
# it to /etc/bash_completion.d/. Flags come from the commands themselves (urfave/cli's
# --generate-bash-completion); anything else completes as a file name.
_stdpkt_complete() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	if [[ $cur == -* ]]; then
		local flags
		flags=$("${COMP_WORDS[0]}" "${cur:--}" --generate-bash-completion 2>/dev/null)
		mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
	else
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	fi
}
complete -o default -F _stdpkt_complete stdpkt-src stdpkt-sink stdpkt-fw stdpkt-nat stdpkt-dump
