// Command verdant-oidc-provider is the OpenID provider of Verdant's tests: zitadel's example
// provider (github.com/zitadel/oidc/v3/example/server) serving HTTPS, with its users read from a
// JSON file, one confidential web client, and a `groups` claim (an array of strings) in the ID
// token and userinfo whenever scope `groups` is asked for. The subject of a user is its plain id.
//
// It is for tests only: passwords are plain text, keys live in memory, and zitadel's example
// storage keeps its own demonstration service users. SIGHUP rotates the signing key (keys.go);
// SIGUSR1 reads the users file's groups again (a user leaving a group at the provider), for
// tokens issued from then on, refreshed ones included.
//
//	verdant-oidc-provider --addr 127.0.0.1:8443 --issuer https://127.0.0.1:8443 \
//	  --tls-cert cert.pem --tls-key key.pem --users users.json \
//	  --client-id verdant-broker --client-secret s3cret \
//	  --redirect-glob 'http://127.0.0.1:*/auth/callback'
//
// The users file is a JSON array: [{"id": "alice", "password": "pw", "groups": ["engineering"]}].
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// scopeGroups is the scope that adds the groups claim, claimGroups that claim.
const (
	scopeGroups = "groups"
	claimGroups = "groups"
)

// config holds the command line.
type config struct {
	addr, issuer, tlsCert, tlsKey, usersFile, clientID, clientSecret string
	redirectGlobs                                                    []string
}

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(logger, os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "verdant-oidc-provider: %v\n", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	users, err := readUsers(cfg.usersFile)
	if err != nil {
		return err
	}
	users.reloadGroupsOnSignal(logger, cfg.usersFile)
	if _, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey); err != nil {
		return fmt.Errorf("--tls-cert %s / --tls-key %s: %w", cfg.tlsCert, cfg.tlsKey, err)
	}

	// The globs double as the exact list, which no real URI equals; without one, zitadel's
	// WebClient would register its own default (http://localhost:9999/auth/callback).
	client := storage.WebClient(cfg.clientID, cfg.clientSecret, cfg.redirectGlobs...)
	keys, err := newRotatingKeys(logger)
	if err != nil {
		return err
	}
	store := &groupsStorage{
		keys:          keys,
		Storage:       storage.NewStorageWithClients(users, map[string]*storage.Client{cfg.clientID: client}),
		users:         users,
		clientID:      cfg.clientID,
		redirectGlobs: cfg.redirectGlobs,
	}
	router := exampleop.SetupServer(cfg.issuer, store, logger, false)

	listener, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", cfg.addr, err)
	}
	logger.Info("serving", "addr", listener.Addr().String(), "issuer", cfg.issuer,
		"client_id", cfg.clientID, "users", len(users.users), "redirect_globs", cfg.redirectGlobs)
	server := &http.Server{Handler: router}
	if err := server.ServeTLS(listener, cfg.tlsCert, cfg.tlsKey); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", cfg.addr, err)
	}
	return nil
}

// parseFlags reads and checks the command line; every error names the flag.
func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("verdant-oidc-provider", flag.ContinueOnError)
	fs.StringVar(&cfg.addr, "addr", "", "host:port to serve HTTPS on, e.g. 127.0.0.1:8443")
	fs.StringVar(&cfg.issuer, "issuer", "", "issuer URL (https), exactly as relying parties configure it")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM serving certificate")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM serving key")
	fs.StringVar(&cfg.usersFile, "users", "", `JSON users file: [{"id": ..., "password": ..., "groups": [...]}]`)
	fs.StringVar(&cfg.clientID, "client-id", "", "id of the confidential web client")
	fs.StringVar(&cfg.clientSecret, "client-secret", "", "secret of the confidential web client")
	fs.Func("redirect-glob", "redirect URI glob of the client, e.g. 'http://127.0.0.1:*/auth/callback' (repeatable)",
		func(glob string) error {
			if !doublestar.ValidatePattern(glob) {
				return fmt.Errorf("not a valid glob: %q", glob)
			}
			cfg.redirectGlobs = append(cfg.redirectGlobs, glob)
			return nil
		})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	required := []struct{ name, value string }{
		{"--addr", cfg.addr}, {"--issuer", cfg.issuer}, {"--tls-cert", cfg.tlsCert}, {"--tls-key", cfg.tlsKey},
		{"--users", cfg.usersFile}, {"--client-id", cfg.clientID}, {"--client-secret", cfg.clientSecret},
	}
	for _, r := range required {
		if r.value == "" {
			return nil, fmt.Errorf("%s is required", r.name)
		}
	}
	if len(cfg.redirectGlobs) == 0 {
		return nil, errors.New("--redirect-glob is required (at least one)")
	}
	issuer, err := url.Parse(cfg.issuer)
	if err != nil || issuer.Scheme != "https" || issuer.Host == "" || issuer.RawQuery != "" || issuer.Fragment != "" {
		return nil, fmt.Errorf("--issuer %q must be an https URL without query or fragment", cfg.issuer)
	}
	return cfg, nil
}

// user is one entry of the users file.
type user struct {
	ID       string   `json:"id"`
	Password string   `json:"password"`
	Groups   []string `json:"groups"`
}

// userStore implements storage.UserStore over the users file; a user's id is its user name.
// Its groups may be read again (reloadGroups) while it serves.
type userStore struct {
	users  map[string]*storage.User
	mu     sync.RWMutex
	groups map[string][]string
}

// groupsOf is a copy of the groups of user id.
func (u *userStore) groupsOf(id string) []string {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return append([]string{}, u.groups[id]...)
}

// reloadGroupsOnSignal reads the users file's groups again on every SIGUSR1 (users and
// passwords stay as they were), logging each reload.
func (u *userStore) reloadGroupsOnSignal(logger *slog.Logger, path string) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			fresh, err := readUsers(path)
			if err != nil {
				logger.Error("reloading the users' groups failed", "error", err)
				continue
			}
			u.mu.Lock()
			u.groups = fresh.groups
			u.mu.Unlock()
			logger.Info("reloaded the users' groups", "users", len(fresh.groups))
		}
	}()
}

func readUsers(path string) (*userStore, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--users: %w", err)
	}
	var entries []user
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&entries); err != nil {
		return nil, fmt.Errorf("--users %s: not a JSON array of {id, password, groups}: %w", path, err)
	}
	store := &userStore{users: map[string]*storage.User{}, groups: map[string][]string{}}
	for i, entry := range entries {
		switch {
		case entry.ID == "":
			return nil, fmt.Errorf("--users %s: user %d has no id", path, i)
		case entry.Password == "":
			return nil, fmt.Errorf("--users %s: user %q has no password", path, entry.ID)
		case store.users[entry.ID] != nil:
			return nil, fmt.Errorf("--users %s: user %q appears twice", path, entry.ID)
		}
		store.users[entry.ID] = &storage.User{
			ID:        entry.ID,
			Username:  entry.ID,
			Password:  entry.Password,
			FirstName: entry.ID,
		}
		store.groups[entry.ID] = append([]string{}, entry.Groups...)
	}
	return store, nil
}

func (u *userStore) GetUserByID(id string) *storage.User { return u.users[id] }

func (u *userStore) GetUserByUsername(name string) *storage.User { return u.users[name] }

// ExampleClientID is the id zitadel's example storage files its demonstration JWT-profile key
// under; it is not one of our users.
func (u *userStore) ExampleClientID() string { return storage.ServiceUserID }

// groupsStorage is zitadel's example storage plus the groups claim and redirect globs.
type groupsStorage struct {
	*storage.Storage
	keys          *rotatingKeys
	users         *userStore
	clientID      string
	redirectGlobs []string
}

// SetUserinfoFromRequest fills the ID token's claims: the example's, plus groups.
func (s *groupsStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, request op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, request, scopes); err != nil {
		return err
	}
	s.addGroups(info, request.GetSubject(), scopes)
	return nil
}

// SetUserinfoFromToken fills the userinfo endpoint's answer: the example's, plus groups when
// the access token was granted scope groups.
func (s *groupsStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	var token oidc.IntrospectionResponse
	if err := s.Storage.SetIntrospectionFromToken(ctx, &token, tokenID, subject, s.clientID); err != nil {
		return err
	}
	s.addGroups(info, subject, token.Scope)
	return nil
}

func (s *groupsStorage) addGroups(info *oidc.UserInfo, subject string, scopes []string) {
	if slices.Contains(scopes, scopeGroups) {
		// Always an array, also when empty, so relying parties see a list of strings.
		info.AppendClaims(claimGroups, s.users.groupsOf(subject))
	}
}

// GetClientByClientID returns the example's client, which allows scope groups and the
// redirect globs.
func (s *groupsStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	client, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return groupsClient{Client: client, redirectGlobs: s.redirectGlobs}, nil
}

// groupsClient is an op.Client that allows scope groups and redirect URIs by glob.
type groupsClient struct {
	op.Client
	redirectGlobs []string
}

func (c groupsClient) IsScopeAllowed(scope string) bool {
	return scope == scopeGroups || c.Client.IsScopeAllowed(scope)
}

func (c groupsClient) RedirectURIGlobs() []string { return c.redirectGlobs }

func (c groupsClient) PostLogoutRedirectURIGlobs() []string { return nil }
