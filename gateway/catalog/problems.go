package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// joinedErr is errors.Join under a count, so a long list reads as one:
// "3 problems:\n a\n b\n c". errors.Is and errors.As see every problem.
type joinedErr struct{ errs []error }

func (j joinedErr) Error() string {
	if len(j.errs) == 1 {
		return j.errs[0].Error()
	}
	return fmt.Sprintf("%d problems:\n%s", len(j.errs), errors.Join(j.errs...))
}

func (j joinedErr) Unwrap() []error { return j.errs }

func joined(errs []error) error { return joinedErr{errs} }

// joinedLine is errors.Join on one line, "a; b", for a log line.
type joinedLine []error

func (j joinedLine) Error() string {
	msgs := make([]string, len(j))
	for i, err := range j {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joinedLine) Unwrap() []error { return j }
