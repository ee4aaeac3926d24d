// Command stdpkt-nat is a NAT stage: source NAT, masquerade and port forwarding by
// netstack's own NAT, in the stage's own netstack instance.
package main

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/stdpkt/stdpkt/nf"
	"github.com/stdpkt/stdpkt/osinst"
	"github.com/stdpkt/stdpkt/rules"
)

var version = "dev"

func main() {
	const cat = "NAT"
	nf.Main(&cli.App{
		Name:    "stdpkt-nat",
		Version: version,
		Usage:   "a NAT stage: source NAT, masquerade and port forwarding",
		Description: `stdpkt-nat translates addresses between an inside (west, unless --inside east) and an
outside, with netstack's NAT and connection tracking: the source of what leaves by the
outside (--snat ADDRESS, or --masquerade in router mode), the destination of what comes in
on forwarded ports (--forward), or the nat table of an iptables-save file (-f). Ports are
kept when free and remapped on a collision, inside --ports if given. Replies are translated
back as they return. Without --west/--east it is a bump in the wire that keeps MACs and TTL.

Examples:
   stdpkt-src -r lan.pcap | stdpkt-nat --snat 203.0.113.1 | stdpkt-sink -w wan.pcapng
   stdpkt-src veth-in | stdpkt-nat --west 192.0.2.1/24 --east 203.0.113.1/24 --masquerade | stdpkt-sink veth-out
   stdpkt-nat --snat 203.0.113.1 --forward tcp:8080=192.0.2.10:80 --forward udp:5353=192.0.2.20:53`,
		Flags: append(append(osinst.RuleFileFlags("nat", cat), []cli.Flag{
			&cli.StringFlag{Name: "snat", Category: cat, Usage: "translate sources leaving by the outside to `ADDRESS`"},
			&cli.BoolFlag{Name: "masquerade", Category: cat, Usage: "translate sources to the outside address (router mode: --west/--east)"},
			&cli.StringFlag{Name: "ports", Category: cat, Usage: "source ports `LOW-HIGH` that --snat and --masquerade may use"},
			&cli.StringSliceFlag{Name: "forward", Category: cat, Usage: "forward `tcp|udp:PORT=ADDRESS:PORT` from the outside to an inside host"},
			&cli.StringFlag{Name: "inside", Category: cat, Value: "west", Usage: "the `SIDE` the private hosts are on: west or east"},
		}...), append(osinst.Flags(), append(nf.ReturnFlags(), nf.Flags()...)...)...),
		Action: run,
	})
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return nf.UsageError(fmt.Errorf("unexpected argument %q", c.Args().First()))
	}
	ruleset, err := loadNAT(c)
	if err != nil {
		return err
	}
	if ruleset.Family == rules.IPv4 {
		ruleset.Warnings = append(ruleset.Warnings, "the NAT rules are IPv4: IPv6 passes untranslated")
	} else if ruleset.Family == rules.IPv6 {
		ruleset.Warnings = append(ruleset.Warnings, "the NAT rules are IPv6: IPv4 passes untranslated")
	}
	for _, w := range ruleset.Warnings {
		if c.Bool("quiet") {
			break
		}
		fmt.Fprintf(os.Stderr, "stdpkt-nat: warning: %s\n", w)
	}
	cfg, err := osinst.ConfigFrom(c)
	if err != nil {
		return err
	}
	cfg.NAT, cfg.Log = ruleset, os.Stderr
	return osinst.RunStage(c, cfg, nil)
}

func loadNAT(c *cli.Context) (*rules.Ruleset, error) {
	flagsGiven := c.IsSet("snat") || c.IsSet("masquerade") || c.IsSet("forward") || c.IsSet("ports")
	if c.IsSet("file") {
		if flagsGiven {
			return nil, nf.UsageError(fmt.Errorf("-f and --snat/--masquerade/--forward/--ports exclude each other"))
		}
		return osinst.LoadRuleFile(c, "nat")
	}
	if !flagsGiven {
		return nil, nf.UsageError(fmt.Errorf("nothing to translate: give --snat ADDRESS, --masquerade, --forward or -f FILE"))
	}
	flags := rules.NATFlags{Inside: c.String("inside"), Masquerade: c.Bool("masquerade"), Forwards: c.StringSlice("forward")}
	if s := c.String("snat"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, nf.UsageError(fmt.Errorf("--snat %q: want an address, e.g. 203.0.113.1", s))
		}
		flags.SNAT = a
	}
	if p := c.String("ports"); p != "" {
		pr, err := rules.ParsePortRange(p)
		if err != nil {
			return nil, nf.UsageError(fmt.Errorf("--ports %q: %w", p, err))
		}
		flags.Ports = pr
	}
	rs, err := rules.FromNATFlags(flags)
	if err != nil {
		return nil, nf.UsageError(err)
	}
	return rs, nil
}
