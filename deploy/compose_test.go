package deploy_test

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// root is the module root, where the Dockerfile and docker-compose.yml live;
// tests run in their package's directory.
const root = ".."

// orderflowServices are the containers that run the orderflow binary, one
// role (or one instance of a role) each.
var orderflowServices = []string{"command-1", "command-2", "query", "relay", "projector", "saga", "payment-provider", "gateway"}

// configuredEnv matches the variables that configure the binary, as opposed
// to those of the images (POSTGRES_*, KAFKA_* other than KAFKA_BROKERS).
var configuredEnv = regexp.MustCompile(`^(ORDERFLOW_.*|DATABASE_URL|KAFKA_BROKERS|CONSUL_HTTP_ADDR)$`)

// MustLoadCompose loads docker-compose.yml as docker compose would, with the
// given profiles enabled, from an empty environment so that the file's own
// defaults are what is checked. Validation against the Compose schema and
// the consistency checks (depends_on targets exist, ...) are part of loading.
func MustLoadCompose(tb testing.TB, profiles ...string) *types.Project {
	tb.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		tb.Fatalf("compose options: %v", err)
	}
	project, err := opts.LoadProject(tb.Context())
	if err != nil {
		tb.Fatalf("load docker-compose.yml: %v", err)
	}
	return project
}

// MustService returns the named service, enabled or not.
func MustService(tb testing.TB, p *types.Project, name string) types.ServiceConfig {
	tb.Helper()
	s, ok := p.AllServices()[name]
	if !ok {
		tb.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

func TestComposeHasEveryService(t *testing.T) {
	t.Parallel()
	p := MustLoadCompose(t, "load")
	want := append([]string{"postgres", "kafka", "consul", "k6"}, orderflowServices...)
	for _, name := range want {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %q is missing (with the load profile enabled)", name)
		}
	}
	// Every container running the binary is one of the checked roles.
	image := MustService(t, p, "query").Image
	for name, s := range p.AllServices() {
		if s.Image == image && !slices.Contains(orderflowServices, name) {
			t.Errorf("service %q runs the orderflow image but is not in orderflowServices; add it there so it is checked", name)
		}
	}
}

func TestComposeHealthChecks(t *testing.T) {
	t.Parallel()
	p := MustLoadCompose(t, "load")
	for name, s := range p.AllServices() {
		hc := s.HealthCheck
		switch {
		case hc == nil || len(hc.Test) == 0:
			t.Errorf("service %q has no health check", name)
			continue
		case hc.Disable || hc.Test[0] == "NONE":
			t.Errorf("service %q disables its health check", name)
			continue
		case hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL":
			t.Errorf("service %q: health check test %q: want CMD or CMD-SHELL form", name, hc.Test)
		}
		if hc.Interval == nil || hc.Retries == nil {
			t.Errorf("service %q: health check without interval and retries", name)
		}
	}
	for _, name := range orderflowServices {
		hc := MustService(t, p, name).HealthCheck
		if hc == nil || !slices.ContainsFunc(hc.Test, func(arg string) bool { return strings.HasSuffix(arg, ":8080/readyz") }) {
			t.Errorf("service %q: health check %v: want it to ask the role's /readyz on port 8080", name, hc)
		}
	}
}

func TestComposeStartOrder(t *testing.T) {
	t.Parallel()
	p := MustLoadCompose(t, "load")
	tests := []struct {
		name    string
		service string
		needs   []string
	}{
		{name: "command instance 1", service: "command-1", needs: []string{"postgres", "consul"}},
		{name: "command instance 2", service: "command-2", needs: []string{"postgres", "consul"}},
		{name: "query", service: "query", needs: []string{"postgres", "consul"}},
		{name: "relay publishes to Kafka", service: "relay", needs: []string{"postgres", "kafka", "consul"}},
		{name: "projector consumes from Kafka", service: "projector", needs: []string{"postgres", "kafka", "consul"}},
		{name: "saga consumes and charges", service: "saga", needs: []string{"postgres", "kafka", "consul", "payment-provider"}},
		{name: "payment provider", service: "payment-provider", needs: []string{"postgres", "consul"}},
		{name: "gateway routes to commands, queries and projection admin", service: "gateway", needs: []string{"consul", "command-1", "command-2", "query", "projector"}},
		{name: "k6 loads the gateway", service: "k6", needs: []string{"gateway"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := MustService(t, p, tt.service)
			for _, dep := range tt.needs {
				d, ok := s.DependsOn[dep]
				if !ok {
					t.Errorf("%s does not depend on %s", tt.service, dep)
					continue
				}
				if d.Condition != types.ServiceConditionHealthy {
					t.Errorf("%s depends on %s with condition %q, want %q", tt.service, dep, d.Condition, types.ServiceConditionHealthy)
				}
			}
		})
	}
	// Every dependency waits for health: each service has a health check.
	for name, s := range p.AllServices() {
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s depends on %s with condition %q, want %q", name, dep, d.Condition, types.ServiceConditionHealthy)
			}
		}
	}
}

func TestComposePublishesOnlyTheGateway(t *testing.T) {
	t.Parallel()
	p := MustLoadCompose(t, "load")
	for name, s := range p.AllServices() {
		if name == "gateway" {
			continue
		}
		if len(s.Ports) > 0 {
			t.Errorf("service %q publishes ports %+v; only the gateway may", name, s.Ports)
		}
	}
	ports := MustService(t, p, "gateway").Ports
	if len(ports) != 1 || ports[0].Target != 8080 || ports[0].Published != "8080" {
		t.Errorf("gateway ports = %+v, want 8080:8080", ports)
	}
}

func TestComposeLoadProfile(t *testing.T) {
	t.Parallel()
	plain := MustLoadCompose(t)
	if _, ok := plain.Services["k6"]; ok {
		t.Error("k6 runs without the load profile")
	}
	if _, ok := plain.DisabledServices["k6"]; !ok {
		t.Error("k6 is not among the services the load profile enables")
	}
	for name, s := range MustLoadCompose(t, "load").AllServices() {
		want := []string(nil)
		if name == "k6" {
			want = []string{"load"}
		}
		if !slices.Equal(s.Profiles, want) {
			t.Errorf("service %q has profiles %q, want %q", name, s.Profiles, want)
		}
	}
}

func TestOrderflowContainersAreNotRoot(t *testing.T) {
	t.Parallel()
	p := MustLoadCompose(t)
	dockerfile, err := filepath.Abs(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var image string
	for _, name := range orderflowServices {
		s := MustService(t, p, name)
		if s.Build == nil {
			t.Errorf("%s: no build section; want it built from the Dockerfile", name)
			continue
		}
		got := s.Build.Dockerfile
		if !filepath.IsAbs(got) {
			got = filepath.Join(s.Build.Context, got)
		}
		if got != dockerfile {
			t.Errorf("%s: built from %s, want %s", name, got, dockerfile)
		}
		if image == "" {
			image = s.Image
		}
		if s.Image == "" || s.Image != image {
			t.Errorf("%s: image %q, want every role to share one named image (%q)", name, s.Image, image)
		}
		if s.User != "" && isRoot(s.User) {
			t.Errorf("%s: user %q overrides the image's non-root user", name, s.User)
		}
	}

	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	user, err := finalStageUser(f)
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	switch {
	case user == "":
		t.Error("the Dockerfile's final stage has no USER, so it runs as its base image's user (root); want a USER that is not root")
	case isRoot(user):
		t.Errorf("the Dockerfile's final stage runs as USER %s; want a user that is not root", user)
	}
}

func TestFinalStageUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dockerfile, want string
	}{
		{name: "one stage", dockerfile: "FROM alpine\nUSER 10001\n", want: "10001"},
		{name: "user of an earlier stage does not carry over", dockerfile: "FROM golang AS build\nUSER nobody\nFROM alpine\nRUN true\n", want: ""},
		{name: "last USER of the final stage wins", dockerfile: "FROM golang AS b\nFROM alpine\nUSER root\nRUN apk add x\nuser 10001:10001\n", want: "10001:10001"},
		{name: "comments and continuations", dockerfile: "# USER nobody\nFROM alpine\nRUN a \\\n  && b\n  # USER inside a comment\nUSER app\n", want: "app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := finalStageUser(strings.NewReader(tt.dockerfile))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("finalStageUser = %q, want %q", got, tt.want)
			}
		})
	}
	for user, root := range map[string]bool{"root": true, "0": true, "0:0": true, "root:root": true, "10001": false, "10001:10001": false, "app": false, "0app": false} {
		if isRoot(user) != root {
			t.Errorf("isRoot(%q) = %t, want %t", user, !root, root)
		}
	}
}

// finalStageUser returns the argument of the last USER instruction of a
// Dockerfile's last stage, or "" when that stage has none (and so runs as
// its base image's user, root for the usual bases).
func finalStageUser(r io.Reader) (string, error) {
	var user, pending string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending == "") {
			continue // a comment line, even within a continued instruction
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			pending += rest + " "
			continue
		}
		instr, args, _ := strings.Cut(strings.TrimSpace(pending+line), " ")
		pending = ""
		switch strings.ToUpper(instr) {
		case "FROM":
			user = ""
		case "USER":
			user = strings.TrimSpace(args)
		}
	}
	return user, sc.Err()
}

// isRoot reports whether a user[:group] spec names the root user.
func isRoot(spec string) bool {
	u, _, _ := strings.Cut(strings.TrimSpace(spec), ":")
	return u == "root" || u == "0"
}

// MustBinaryConfig builds cmd/orderflow and returns what `orderflow serve -h`
// documents: every environment variable its flags read ("($VAR)" in the help)
// and the roles ORDERFLOW_ROLES accepts.
func MustBinaryConfig(tb testing.TB) (envVars, roles []string) {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("the go command is needed to build cmd/orderflow: %v", err)
	}
	bin := filepath.Join(tb.TempDir(), "orderflow")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/orderflow")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/orderflow: %v\n%s", err, out)
	}
	// -h makes the flag set print its usage and fail with flag.ErrHelp, so a
	// non-zero exit is expected; the output is what counts.
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	for _, m := range regexp.MustCompile(`\(\$([A-Z][A-Z0-9_]*)\)`).FindAllSubmatch(out, -1) {
		envVars = append(envVars, string(m[1]))
	}
	if !slices.Contains(envVars, "DATABASE_URL") || !slices.Contains(envVars, "ORDERFLOW_ROLES") {
		tb.Fatalf("orderflow serve -h names no ($DATABASE_URL) and ($ORDERFLOW_ROLES); its help changed shape:\n%s", out)
	}
	m := regexp.MustCompile(`roles to run: ([a-z, -]+?)\s*\(\$ORDERFLOW_ROLES\)`).FindSubmatch(out)
	if m == nil {
		tb.Fatalf("orderflow serve -h does not list the roles as \"roles to run: a, b (...)\":\n%s", out)
	}
	for _, r := range strings.Split(string(m[1]), ",") {
		roles = append(roles, strings.TrimSpace(r))
	}
	return envVars, roles
}

func TestComposeSetsOnlyConfigurationTheBinaryReads(t *testing.T) {
	t.Parallel()
	envVars, roles := MustBinaryConfig(t)
	p := MustLoadCompose(t, "load")

	for name, s := range p.AllServices() {
		for key, val := range s.Environment {
			if !configuredEnv.MatchString(key) {
				continue
			}
			if !slices.Contains(envVars, key) {
				t.Errorf("service %q sets %s, which orderflow does not read (it reads %s)", name, key, strings.Join(envVars, ", "))
			}
			if val == nil || *val == "" {
				t.Errorf("service %q sets %s to nothing", name, key)
			}
		}
	}

	for _, name := range orderflowServices {
		env := MustService(t, p, name).Environment
		rolesVal := env["ORDERFLOW_ROLES"]
		if rolesVal == nil {
			t.Errorf("%s: ORDERFLOW_ROLES is not set; it would run every role", name)
			continue
		}
		if env["DATABASE_URL"] == nil && *rolesVal != "gateway" {
			t.Errorf("%s: DATABASE_URL is not set; every role but the gateway needs it", name)
		}
		// Registered in Consul at this host: the agent checks it there and
		// the gateway sends requests there.
		if h := env["ORDERFLOW_ADVERTISE_HOST"]; env["CONSUL_HTTP_ADDR"] == nil || h == nil || *h != name {
			t.Errorf("%s: CONSUL_HTTP_ADDR %v, ORDERFLOW_ADVERTISE_HOST %v; want both, the host being the service name", name, env["CONSUL_HTTP_ADDR"], h)
		}
		if *rolesVal == "gateway" {
			if secret := env["ORDERFLOW_JWT_SECRET"]; secret == nil || len(*secret) < 32 {
				t.Errorf("%s: ORDERFLOW_JWT_SECRET is missing or shorter than the 32 bytes the gateway requires", name)
			}
			for key := range env {
				if strings.HasPrefix(key, "ORDERFLOW_GATEWAY_") && strings.HasSuffix(key, "_URLS") {
					t.Errorf("%s: %s set; with Consul the gateway finds its upstreams there, and refuses static ones", name, key)
				}
			}
		}
		for _, r := range strings.Split(*rolesVal, ",") {
			r = strings.TrimSpace(r)
			if r == "all" || !slices.Contains(roles, r) {
				t.Errorf("%s: ORDERFLOW_ROLES=%s: %q is not a role of its own (known: %s); each container runs named roles", name, *rolesVal, r, strings.Join(roles, ", "))
			}
		}
		if strings.Contains(*rolesVal, "relay") || strings.Contains(*rolesVal, "projector") || strings.Contains(*rolesVal, "saga") {
			if env["KAFKA_BROKERS"] == nil {
				t.Errorf("%s: runs %s without KAFKA_BROKERS", name, *rolesVal)
			}
		}
		if strings.Contains(*rolesVal, "saga") && !strings.Contains(*rolesVal, "payment-provider") && env["ORDERFLOW_PAYMENT_PROVIDER_URL"] == nil {
			t.Errorf("%s: runs the saga without ORDERFLOW_PAYMENT_PROVIDER_URL", name)
		}
	}
}

// TestComposeAddressesNameDependencies checks that each address a role is
// given names a service of the project that the role waits for.
func TestComposeAddressesNameDependencies(t *testing.T) {
	t.Parallel()
	p := MustLoadCompose(t, "load")
	hostsOf := map[string]func(string) ([]string, error){
		"DATABASE_URL":                   urlHost,
		"ORDERFLOW_PAYMENT_PROVIDER_URL": urlHost,
		"CONSUL_HTTP_ADDR":               addrHosts,
		"KAFKA_BROKERS":                  addrHosts,
	}
	for name, s := range p.AllServices() {
		for key, hosts := range hostsOf {
			val := s.Environment[key]
			if val == nil {
				continue
			}
			hs, err := hosts(*val)
			if err != nil {
				t.Errorf("service %q: %s=%q: %v", name, key, *val, err)
				continue
			}
			for _, h := range hs {
				if _, ok := p.AllServices()[h]; !ok {
					t.Errorf("service %q: %s=%q names %q, which is not a service", name, key, *val, h)
				} else if _, ok := s.DependsOn[h]; !ok {
					t.Errorf("service %q: %s names %q but does not depend on it", name, key, h)
				}
			}
		}
	}
}

func urlHost(v string) ([]string, error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, err
	}
	return []string{u.Hostname()}, nil
}

func addrHosts(v string) ([]string, error) {
	var hosts []string
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if _, rest, ok := strings.Cut(a, "://"); ok {
			a = rest
		}
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// TestDockerignoreKeepsTheBuildInputs checks the build context: every file
// `go build ./cmd/orderflow` reads (go.mod, go.sum, the Go and embedded files
// of the module's packages it imports) is sent, and the local data is not.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}

	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/orderflow")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/orderflow: %v", err)
	}
	inputs := []string{"go.mod", "go.sum"}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		rel, err := filepath.Rel(absRoot, f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, filepath.ToSlash(rel))
	}
	if len(inputs) < 10 {
		t.Fatalf("go list found only %v", inputs)
	}
	for _, f := range inputs {
		if dockerignored(patterns, f) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", f)
		}
	}
	for _, f := range []string{".git/config", ".dev/postgres/PG_VERSION", "bin/orderflow"} {
		if !dockerignored(patterns, f) {
			t.Errorf(".dockerignore sends %s into the build context", f)
		}
	}
}

func TestDockerignored(t *testing.T) {
	t.Parallel()
	patterns := []string{".git", "**/*_test.go", "docs/*.md", "!docs/keep.md", "/bin"}
	for path, want := range map[string]bool{
		".git":              true,
		".git/objects/ab":   true,
		".github/x.yml":     false,
		"a_test.go":         true,
		"pkg/sub/a_test.go": true,
		"pkg/a.go":          false,
		"docs/a.md":         true,
		"docs/keep.md":      false,
		"docs/sub/a.md":     false, // * stays within one path element
		"bin/orderflow":     true,
		"cmd/bin/x":         false,
	} {
		if got := dockerignored(patterns, path); got != want {
			t.Errorf("dockerignored(%q) = %t, want %t", path, got, want)
		}
	}
}

// dockerignored reports whether a path (relative, with /) is left out of the
// build context by .dockerignore patterns, as Docker reads them: a pattern
// matches a path or one of its parent directories, * and ? stay within a
// path element, ** spans elements, and the last matching pattern wins, a
// pattern starting with ! putting the path back.
func dockerignored(patterns []string, path string) bool {
	ignored := false
	for _, p := range patterns {
		keep := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		re := dockerignorePattern(filepath.ToSlash(filepath.Clean(p)))
		parts := strings.Split(path, "/")
		for i := range parts {
			if re.MatchString(strings.Join(parts[:i+1], "/")) {
				ignored = !keep
				break
			}
		}
	}
	return ignored
}

func dockerignorePattern(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
