package config

import (
	"cmp"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/outbox"
)

// Outbox is the `outbox` block: how `run` delivers from its durable
// outbox.
type Outbox struct {
	// SendTimeout bounds one notification attempt (0: 30s). With
	// shared_state, shared_state.lease must exceed it by
	// dynamostate.LeaseMargin, so that a claim outlasts its send.
	SendTimeout time.Duration `yaml:"send_timeout"`
}

// SendTimeoutOrDefault is SendTimeout, or the outbox's default when it is
// not set.
func (o Outbox) SendTimeoutOrDefault() time.Duration {
	return cmp.Or(o.SendTimeout, outbox.DefaultAttemptTimeout)
}

// checkDelivery checks the outbox block and that a shared_state lease
// covers a send: a claim that runs out while its send is still going lets
// another instance send the alert again.
func (p *parser) checkDelivery(root *yaml.Node, cfg *Config) {
	if cfg.Outbox.SendTimeout < 0 {
		p.errorf(keyNode(root, "outbox", "send_timeout"), "outbox: send_timeout must not be negative")
		return
	}
	ss := cfg.SharedState
	if ss == nil || ss.Lease < 0 {
		return
	}
	lease := cmp.Or(ss.Lease, dynamostate.DefaultLease)
	send := cfg.Outbox.SendTimeoutOrDefault()
	if least := dynamostate.MinLease(send); lease < least {
		p.errorf(keyNode(root, "shared_state", "lease"),
			"shared_state: lease %s must exceed outbox.send_timeout (%s) by at least %s, or a notifier still sending when the claim runs out may be sent the alert again by another instance: use lease: %s or more, or a shorter outbox.send_timeout",
			lease, send, dynamostate.LeaseMargin, least)
	}
}
