package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// rotatingKeys is the provider's signing key, replaced by a new one (with a new key id) on
// SIGHUP. The key set then lists the new key only, as after a provider's rotation once the old
// key has been retired: relying parties that cached the old set must fetch it again.
type rotatingKeys struct {
	mu      sync.RWMutex
	current *rsaKey
}

// rsaKey is an RS256 key pair, both the op.SigningKey and (public half) the op.Key.
type rsaKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *rsaKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *rsaKey) Key() any                                    { return k.key }
func (k *rsaKey) ID() string                                  { return k.id }

// publicRSAKey is the public half of an rsaKey, as the key set publishes it.
type publicRSAKey struct{ k *rsaKey }

func (p publicRSAKey) ID() string                         { return p.k.id }
func (p publicRSAKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicRSAKey) Use() string                        { return "sig" }
func (p publicRSAKey) Key() any                           { return &p.k.key.PublicKey }

func newRSAKey(generation int) (*rsaKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating a signing key: %w", err)
	}
	return &rsaKey{id: fmt.Sprintf("verdant-test-key-%d-%d", os.Getpid(), generation), key: key}, nil
}

// newRotatingKeys makes the first key and rotates on every SIGHUP, logging each new key id.
func newRotatingKeys(logger *slog.Logger) (*rotatingKeys, error) {
	first, err := newRSAKey(1)
	if err != nil {
		return nil, err
	}
	keys := &rotatingKeys{current: first}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for generation := 2; ; generation++ {
			<-hup
			next, err := newRSAKey(generation)
			if err != nil {
				logger.Error("key rotation failed", "error", err)
				continue
			}
			keys.mu.Lock()
			keys.current = next
			keys.mu.Unlock()
			logger.Info("rotated the signing key", "kid", next.id)
		}
	}()
	logger.Info("signing key", "kid", first.id)
	return keys, nil
}

func (r *rotatingKeys) now() *rsaKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.current
}

// SigningKey signs with the current key.
func (s *groupsStorage) SigningKey(context.Context) (op.SigningKey, error) {
	return s.keys.now(), nil
}

// SignatureAlgorithms is RS256 only.
func (s *groupsStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet publishes the current key only.
func (s *groupsStorage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicRSAKey{s.keys.now()}}, nil
}
