package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/trailwatch/trailwatch/notifiers"
)

// smtpSender delivers through an SMTP relay, one connection per alert:
// alerts are rare, and a fresh connection never inherits a broken one.
type smtpSender struct {
	cfg Config
	tls *tls.Config
}

// buildMsg turns m into a go-mail message; the SES Raw transport reuses it.
func buildMsg(m *message) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(m.From); err != nil {
		return nil, fmt.Errorf("set from: %w", err)
	}
	if err := msg.To(m.To...); err != nil {
		return nil, fmt.Errorf("set to: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDateWithValue(m.Date)
	msg.SetMessageIDWithValue(m.MessageID)
	msg.SetGenHeader(gomail.HeaderReferences, "<"+m.ThreadID+">")
	msg.SetGenHeader(gomail.HeaderInReplyTo, "<"+m.ThreadID+">")
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetGenHeader(gomail.HeaderXMailer, "trailwatch")
	for _, h := range m.Headers {
		msg.SetGenHeader(gomail.Header(h[0]), h[1])
	}
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	return msg, nil
}

func (s *smtpSender) send(ctx context.Context, m *message) error {
	msg, err := buildMsg(m)
	if err != nil {
		return notifiers.Permanent(fmt.Errorf("email: build message: %w", err))
	}

	// go-mail leaves the connection open when the handshake fails after
	// the dial (a refused AUTH, say), and does not watch ctx after the
	// dial: keep hold of the connection to close it in both cases.
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	dialer := &net.Dialer{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var err error
		if s.cfg.tlsMode() == TLSImplicit {
			c, err = (&tls.Dialer{NetDialer: dialer, Config: s.tls}).DialContext(ctx, network, addr)
		} else {
			c, err = dialer.DialContext(ctx, network, addr)
		}
		if err == nil {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		return c, err
	}
	stop := context.AfterFunc(ctx, func() { closeAll(&mu, &conns) })
	defer func() {
		stop()
		closeAll(&mu, &conns)
	}()

	opts := []gomail.Option{
		gomail.WithPort(s.cfg.port()),
		gomail.WithTimeout(s.cfg.timeout()),
		gomail.WithTLSConfig(s.tls),
		gomail.WithDialContextFunc(dial),
	}
	if h, err := os.Hostname(); err == nil && h != "" && !hasControl(h) {
		opts = append(opts, gomail.WithHELO(h))
	}
	switch s.cfg.tlsMode() {
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSImplicit:
		// The dialer above does the TLS; go-mail must not try STARTTLS.
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.cfg.Username != "" {
		mech := gomail.SMTPAuthPlain
		switch s.cfg.authMechanism() {
		case "login":
			mech = gomail.SMTPAuthLogin
		case "cram-md5":
			mech = gomail.SMTPAuthCramMD5
		}
		opts = append(opts, gomail.WithSMTPAuth(mech),
			gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password))
	}
	client, err := gomail.NewClient(s.cfg.SMTPHost, opts...)
	if err != nil {
		return notifiers.Permanent(fmt.Errorf("email: smtp client for %s: %w", s.cfg.SMTPHost, err))
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return classifySMTP(fmt.Errorf("email: send via smtp %s:%d: %w", s.cfg.SMTPHost, s.cfg.port(), err))
	}
	return nil
}

func closeAll(mu *sync.Mutex, conns *[]net.Conn) {
	mu.Lock()
	defer mu.Unlock()
	for _, c := range *conns {
		_ = c.Close()
	}
}

// classifySMTP marks err permanent when retrying cannot help: a 5xx reply
// (including a refused AUTH), a client that cannot authenticate safely, a
// relay that will not do the TLS the config asks for, or a certificate that
// does not verify. Refused connections, timeouts, dropped connections and
// 4xx replies stay retryable.
func classifySMTP(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var sendErr *gomail.SendError
	if errors.As(err, &sendErr) {
		switch code := sendErr.ErrorCode(); {
		case code >= 500:
			return notifiers.Permanent(err)
		case code >= 400:
			return err
		}
		switch sendErr.Reason {
		case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
			return notifiers.Permanent(err)
		}
		return err
	}
	var tpErr *textproto.Error
	if errors.As(err, &tpErr) {
		if tpErr.Code >= 500 {
			return notifiers.Permanent(err)
		}
		return err
	}
	var (
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidErr), errors.As(err, &verifyErr),
		errors.Is(err, gosmtp.ErrUnencrypted), errors.Is(err, gosmtp.ErrWrongHostname),
		errors.Is(err, gomail.ErrPlainAuthNotSupported), errors.Is(err, gomail.ErrLoginAuthNotSupported),
		errors.Is(err, gomail.ErrCramMD5AuthNotSupported):
		return notifiers.Permanent(err)
	}
	// go-mail reports these configuration mismatches as plain strings.
	msg := err.Error()
	if strings.Contains(msg, "does not support STARTTLS") || strings.Contains(msg, "does not support SMTP AUTH") {
		return notifiers.Permanent(err)
	}
	return err
}
