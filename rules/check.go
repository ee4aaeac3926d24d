package rules

import (
	"fmt"
	"slices"
	"strings"
)

// Hook is a built-in chain's place in the packet path, as a bit set.
type hookSet uint8

const (
	hookInput hookSet = 1 << iota
	hookForward
	hookOutput
	hookPrerouting
	hookPostrouting
)

var builtinHook = map[string]hookSet{"INPUT": hookInput, "FORWARD": hookForward, "OUTPUT": hookOutput,
	"PREROUTING": hookPrerouting, "POSTROUTING": hookPostrouting}

// finish completes a table at COMMIT: built-in chains first, jumps resolved, no loops, and
// every option valid at every hook its chain is reached from. netstack panics on a rule
// that is wrong for its hook, so everything it could trip over is an error here.
func (p *parser) finish(rs *Ruleset) error {
	builtins := builtinChains[rs.Table]
	ordered := make([]*Chain, 0, len(rs.Chains)+len(builtins))
	for _, name := range builtins {
		c := rs.Chain(name)
		if c == nil {
			// iptables-save always declares them; a hand-written file may not. The
			// kernel's default policy is ACCEPT.
			c = &Chain{Name: name, Builtin: true, Policy: Accept, Src: Source{File: p.file}}
		}
		ordered = append(ordered, c)
	}
	for _, c := range rs.Chains {
		if !c.Builtin {
			ordered = append(ordered, c)
		}
	}
	rs.Chains = ordered
	rs.Warnings = append(rs.Warnings, p.warnings...)
	p.warnings = nil
	return check(rs)
}

// check validates jumps, loops and per-hook options of a complete rule set.
func check(rs *Ruleset) error {
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			if err := checkTable(r, rs.Table); err != nil {
				return err
			}
			if r.Target.Kind != Jump {
				continue
			}
			t := rs.Chain(r.Target.Chain)
			switch {
			case t == nil:
				return ruleErr(r, "-j", "unknown target or undeclared chain %q (targets: ACCEPT, DROP, REJECT, LOG, RETURN, or a user chain declared with \":%s - [0:0]\")", r.Target.Chain, r.Target.Chain)
			case t.Builtin:
				return ruleErr(r, "-j", "cannot jump to built-in chain %s", t.Name)
			}
		}
	}
	// Walk from each built-in chain; a chain on the current path reached again is a loop. A
	// chain walked without error from a hook at a depth is not walked again there: the
	// chains it reaches do not depend on the path to it, and chains that jump to the same
	// chains several times over would take exponential time.
	type walked struct {
		chain string
		h     hookSet
		depth int
	}
	done := map[walked]bool{}
	var walk func(c *Chain, h hookSet, path []string) error
	walk = func(c *Chain, h hookSet, path []string) error {
		key := walked{c.Name, h, len(path)}
		if done[key] {
			return nil
		}
		path = append(path, c.Name)
		for _, r := range c.Rules {
			if err := checkHook(r, h, path); err != nil {
				return err
			}
			if r.Target.Kind != Jump {
				continue
			}
			if slices.Contains(path, r.Target.Chain) {
				return ruleErr(r, "-j", "jump to %s makes a loop (%s -> %s)", r.Target.Chain, strings.Join(path, " -> "), r.Target.Chain)
			}
			if len(path) >= 16 {
				return ruleErr(r, "-j", "chains nest deeper than 16 (%s)", strings.Join(path, " -> "))
			}
			if err := walk(rs.Chain(r.Target.Chain), h, path); err != nil {
				return err
			}
		}
		done[key] = true
		return nil
	}
	for _, c := range rs.Chains {
		if c.Builtin {
			if err := walk(c, builtinHook[c.Name], nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkHook(r *Rule, h hookSet, path []string) error {
	via := ""
	if len(path) > 1 {
		via = " (reached from " + strings.Join(path, " -> ") + ")"
	}
	if h&hookInput != 0 && r.Out != "" {
		return ruleErr(r, "-o", "an output interface cannot match in INPUT%s", via)
	}
	if h&(hookOutput|hookPostrouting) != 0 && r.In != "" {
		return ruleErr(r, "-i", "an input interface cannot match in OUTPUT or POSTROUTING%s", via)
	}
	if h&hookPrerouting != 0 && r.Out != "" {
		return ruleErr(r, "-o", "an output interface cannot match in PREROUTING%s", via)
	}
	return checkNATHook(r, h, via)
}

func ruleErr(r *Rule, opt, format string, args ...any) error {
	return &Error{File: r.Src.File, Line: r.Src.Line, Option: opt, Msg: fmt.Sprintf(format, args...)}
}
