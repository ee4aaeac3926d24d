// Command stdpkt-fw is a stateful firewall stage: iptables-save filter rules or one-liner
// flags, run in the stage's own netstack instance.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/nf"
	"github.com/stdpkt/stdpkt/osinst"
	"github.com/stdpkt/stdpkt/rules"
)

var version = "dev"

func main() {
	const cat = "Firewall"
	nf.Main(&cli.App{
		Name:    "stdpkt-fw",
		Version: version,
		Usage:   "a stateful firewall stage: iptables-save rules or one-liner flags",
		Description: `stdpkt-fw filters the packets that cross it, in both directions, with the FORWARD chain
of an iptables-save filter table (-f) or rules given as flags, in its own netstack instance
with connection tracking: replies of allowed connections come back through it. Without
--west/--east it is a transparent bump in the wire: frames that pass are byte-identical.
Every rule counts what it matched; --list prints them.

Rule flags are read in the order given, after an ESTABLISHED,RELATED accept:
` + rules.OneLinerHelp + `

Examples:
   stdpkt-src -r lan.pcap | stdpkt-fw -f ruleset.txt | stdpkt-sink -w passed.pcapng
   stdpkt-src -r lan.pcap | stdpkt-fw --allow 'tcp dport 80,443' --allow 'udp dport 53' --deny 'tcp dport 23' --policy drop | stdpkt-sink
   stdpkt-fw -f ruleset.txt --list < /dev/null`,
		Flags: append(append(osinst.RuleFileFlags("filter", cat), []cli.Flag{
			&cli.StringSliceFlag{Name: "allow", Category: cat, Usage: "accept what `SPEC` matches, e.g. 'tcp dport 80,443'"},
			&cli.StringSliceFlag{Name: "deny", Category: cat, Usage: "drop what `SPEC` matches"},
			&cli.StringSliceFlag{Name: "reject", Category: cat, Usage: "reject what `SPEC` matches (TCP reset or ICMP port unreachable)"},
			&cli.StringFlag{Name: "policy", Category: cat, Value: "accept", Usage: "what happens to packets no rule flag decides: `accept` or drop"},
			&cli.BoolFlag{Name: "list", Category: cat, Usage: "print the loaded rules with their counters on exit (at once when stdin is a terminal or /dev/null)"},
		}...), append(osinst.Flags(), append(nf.ReturnFlags(), nf.Flags()...)...)...),
		Action: run,
	})
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return nf.UsageError(fmt.Errorf("unexpected argument %q: rules come from -f FILE or --allow/--deny/--reject", c.Args().First()))
	}
	ruleset, err := loadRules(c)
	if err != nil {
		return err
	}
	for _, w := range ruleset.Warnings {
		if c.Bool("quiet") {
			break
		}
		fmt.Fprintf(os.Stderr, "stdpkt-fw: warning: %s\n", w)
	}
	cfg, err := osinst.ConfigFrom(c)
	if err != nil {
		return err
	}
	cfg.Filter, cfg.Log = ruleset, os.Stderr
	if fi, err := os.Stdin.Stat(); c.Bool("list") && err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		// Nothing to filter (a terminal, /dev/null): list the rules and stop.
		return osinst.ListRules(cfg, os.Stdout)
	}
	return osinst.RunStage(c, cfg, func(inst *osinst.Instance, w io.Writer) {
		if c.Bool("list") {
			rules.FormatCounters(w, inst.RuleCounters())
		}
	})
}

// loadRules reads -f or compiles the rule flags, in the order they were given.
func loadRules(c *cli.Context) (*rules.Ruleset, error) {
	opts, err := osinst.RuleOptions(c, "filter")
	if err != nil {
		return nil, err
	}
	items := oneLiners(os.Args[1:])
	switch {
	case c.IsSet("file") && len(items) > 0:
		return nil, nf.UsageError(errors.New("-f and rule flags exclude each other: put the flags' rules in the file"))
	case c.IsSet("file") && c.IsSet("policy"):
		return nil, nf.UsageError(errors.New("-f and --policy exclude each other: the file's chain policies decide"))
	case c.IsSet("file"):
		rs, err := osinst.LoadRuleFile(c, "filter")
		if err == nil {
			// iptables-save governs IPv4 only, as in the kernel: say so rather than let a
			// DROP policy look as if it covered IPv6 too.
			rs.Warnings = append(rs.Warnings, fmt.Sprintf("%s is an %s rule set: %s packets pass unfiltered (give an %s file with -f and %s for them)",
				c.String("file"), rs.Family, other(rs.Family), map[bool]string{true: "iptables-save", false: "ip6tables-save"}[rs.Family == rules.IPv6], map[bool]string{true: "no -6", false: "-6"}[rs.Family == rules.IPv6]))
		}
		return rs, err
	}
	var policy rules.TargetKind
	switch c.String("policy") {
	case "accept", "ACCEPT":
		policy = rules.Accept
	case "drop", "DROP":
		policy = rules.Drop
	default:
		return nil, nf.UsageError(fmt.Errorf("--policy %q: want accept or drop", c.String("policy")))
	}
	opts.Family = rules.IPv4 | rules.IPv6
	rs, err := rules.FromOneLiners(items, policy, opts)
	if err != nil {
		return nil, nf.UsageError(err)
	}
	return rs, nil
}

// other names the IP version a rule set of family f does not govern.
func other(f rules.Family) rules.Family {
	if f == rules.IPv6 {
		return rules.IPv4
	}
	return rules.IPv6
}

// oneLiners collects --allow, --deny and --reject in command-line order, which urfave/cli
// does not keep across different flags, and which decides what a firewall does.
func oneLiners(args []string) []rules.OneLiner {
	targets := map[string]rules.TargetKind{"allow": rules.Accept, "deny": rules.Drop, "reject": rules.Reject}
	var items []rules.OneLiner
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		target, ok := targets[name]
		if !ok || !strings.HasPrefix(a, "-") {
			continue
		}
		if !hasVal && i+1 < len(args) {
			i++
			val = args[i]
		}
		items = append(items, rules.OneLiner{Flag: "--" + name, Target: target, Spec: val})
	}
	return items
}
