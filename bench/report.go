package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// reportHeader starts a BENCHMARKS.md that does not exist yet.
const reportHeader = `# Benchmarks

Written by ` + "`go run ./bench`" + ` (` + "`make bench`" + `). Each section is rewritten only by a
run of that section (` + "`-only=NAME`" + `); every figure stands beside a baseline
measured in the same run on the same machine.
`

// writeSection replaces the section name of the markdown file at path with
// body, between <!-- bench:name --> and <!-- /bench:name -->, leaving the rest
// of the file as it was. A missing section is appended; a missing file is
// created with a header. The file is replaced atomically.
func writeSection(path, name, body string) error {
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	block := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end

	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = []byte(reportHeader)
	case err != nil:
		return fmt.Errorf("read report: %w", err)
	}
	doc := string(old)
	var next string
	if i := strings.Index(doc, begin); i >= 0 {
		j := strings.Index(doc[i:], end)
		if j < 0 {
			return fmt.Errorf("report %s: %s has no closing %s; fix the file by hand", path, begin, end)
		}
		next = doc[:i] + block + doc[i+j+len(end):]
	} else {
		next = strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), ".bench-*.md")
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.WriteString(next); err != nil {
		tmp.Close()
		return fmt.Errorf("write report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// table renders a markdown table.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	line(t.header)
	sep := make([]string, len(t.header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// validity renders problems as a table cell: "ok" or "INVALID".
func validity(problems []string) string {
	if len(problems) == 0 {
		return "ok"
	}
	return "**INVALID**"
}

// problemList renders the problems of invalid figures, one bullet each.
func problemList(label string, problems []string) string {
	var b strings.Builder
	for _, p := range problems {
		fmt.Fprintf(&b, "- **INVALID** %s: %s\n", label, p)
	}
	return b.String()
}
