package tokenizer

import (
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzUnicodeNormalize checks the change-list normalizers against
// x/text: the normalized text must be the normal form (except where x/text
// inserts U+034F after 30 non-starters, which Rust does not), and every
// byte's span must lie on character boundaries of the input.
func FuzzUnicodeNormalize(f *testing.F) {
	for _, s := range []string{"e\u0301", "q\u0307\u0323", "ﬁ ｶﾞ ①", "\u1100\u1161\u11a8", "\u0344a", "Ǆ", "a\u0323\u0302", "\ufdfa"} {
		f.Add(s)
	}
	forms := []struct {
		n    unicodeNormalizer
		form norm.Form
	}{
		{unicodeNormalizer{compose: true}, norm.NFC},
		{unicodeNormalizer{compat: true, compose: true}, norm.NFKC},
		{unicodeNormalizer{compat: true}, norm.NFKD},
	}
	f.Fuzz(func(t *testing.T, text string) {
		if !utf8.ValidString(text) {
			return
		}
		for _, fm := range forms {
			var n normString
			n.appendOriginal(text, 0)
			fm.n.normalize(&n, 0)
			if want := fm.form.String(text); string(n.s) != want && !hasLongMarkRun(text) {
				t.Fatalf("normalize(%+q) = %+q, want %+q", text, n.s, want)
			}
			if len(n.align) != len(n.s) {
				t.Fatalf("normalize(%+q): %d alignments for %d bytes", text, len(n.align), len(n.s))
			}
			for _, sp := range n.align {
				if sp.start < 0 || sp.start > sp.end || int(sp.end) > len(text) || !boundary(text, int(sp.start)) || !boundary(text, int(sp.end)) {
					t.Fatalf("normalize(%+q): span %v out of place", text, sp)
				}
			}
		}
	})
}

// hasLongMarkRun reports a run of more than 30 non-starters (after
// decomposition, roughly: the characters themselves are counted).
func hasLongMarkRun(s string) bool {
	run := 0
	for i := 0; i < len(s); {
		p := norm.NFKD.PropertiesString(s[i:])
		if p.Size() == 0 {
			return false
		}
		if p.LeadCCC() != 0 || p.TrailCCC() != 0 {
			run += len(p.Decomposition())/2 + 1
		} else {
			run = 0
		}
		if run > 30 {
			return true
		}
		i += p.Size()
	}
	return false
}
