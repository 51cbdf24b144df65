package catalog

import (
	"errors"
	"fmt"
	"strings"
)

// Merge puts sources together in order (say the models file, then Triton
// discovery, then the flags): an earlier source wins. A later entry whose
// name or an alias is already taken is dropped whole, with an error naming
// both entries and their sources; every other entry is kept, in order.
// Merge does not Check the entries.
func Merge(sources ...[]Entry) (entries []Entry, dropped []error) {
	owner := map[string]int{} // name or alias -> index in entries
	for _, src := range sources {
		for _, e := range src {
			if err := collision(e, owner, entries); err != nil {
				dropped = append(dropped, fmt.Errorf("%s dropped: %w", describe(e), err))
				continue
			}
			for _, n := range e.Names() {
				owner[n] = len(entries)
			}
			entries = append(entries, e)
		}
	}
	return entries, dropped
}

// collision is the first of e's names already owned by one of entries.
func collision(e Entry, owner map[string]int, entries []Entry) error {
	for _, n := range e.Names() {
		if j, taken := owner[n]; taken {
			return fmt.Errorf("%s %q is already used by %s", kind(e, n), n, describe(entries[j]))
		}
	}
	return nil
}

// Check returns every problem of a whole catalogue at once, joined, each
// naming its entry and source: each entry's own (Entry.Check), names and
// aliases used twice (compared exactly), a defaultName (when set) that is
// no entry's name or alias, and a catalogue with no entry at all.
func Check(entries []Entry, defaultName string) error {
	if len(entries) == 0 {
		return errors.New("catalog: no models to serve: give --model-id, --models-file or --triton-discover")
	}
	label := func(i int) string { return describe(entries[i]) }
	var errs []error
	for i, e := range entries {
		for _, err := range e.problems() {
			errs = append(errs, fmt.Errorf("%s: %w", label(i), err))
		}
	}
	errs = append(errs, duplicates(entries, label)...)
	if defaultName != "" && !serves(entries, defaultName) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Names()...)
		}
		errs = append(errs, fmt.Errorf("default model %q is not served (models and aliases: %s)", defaultName, strings.Join(names, ", ")))
	}
	if len(errs) > 0 {
		return fmt.Errorf("catalog: %w", joined(errs))
	}
	return nil
}

// Default is the name of the model that serves requests without a model:
// flag (--default-model) if set, else the first entry's name, else "".
func Default(entries []Entry, flag string) string {
	if flag != "" || len(entries) == 0 {
		return flag
	}
	return entries[0].Name
}

func serves(entries []Entry, name string) bool {
	for _, e := range entries {
		for _, n := range e.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// duplicates is one error per name or alias already used by an earlier
// entry, naming both by label. A name repeated within one entry is the
// entry's own problem (Entry.Check) and not reported again here.
func duplicates(entries []Entry, label func(i int) string) []error {
	var errs []error
	owner := map[string]int{}
	for i, e := range entries {
		mine := map[string]bool{}
		for _, n := range e.Names() {
			if n == "" || mine[n] {
				continue
			}
			mine[n] = true
			if j, taken := owner[n]; taken {
				errs = append(errs, fmt.Errorf("%s: %s %q is already used by %s", label(i), kind(e, n), n, label(j)))
				continue
			}
			owner[n] = i
		}
	}
	return errs
}

// kind says whether n is e's name or one of its aliases.
func kind(e Entry, n string) string {
	if n == e.Name {
		return "name"
	}
	return "alias"
}

// describe names an entry and where it came from: `model "e5" (file
// models.yaml)`.
func describe(e Entry) string {
	if e.Source == "" {
		return fmt.Sprintf("model %q", e.Name)
	}
	return fmt.Sprintf("model %q (%s)", e.Name, e.Source)
}
