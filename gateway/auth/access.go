package auth

import "slices"

// MayUse says whether the key may use the model called names (its name,
// then its aliases): a key without a models list may use every model, one
// listing "*" too; otherwise it needs one of names in its list.
func (k Key) MayUse(names []string) bool {
	if k.Models == nil || slices.Contains(k.Models, "*") {
		return true
	}
	for _, n := range names {
		if slices.Contains(k.Models, n) {
			return true
		}
	}
	return false
}

// TPMFor is the key's own tokens-per-minute limit on the model called
// names (its name, then its aliases): the first of names with an entry in
// ModelTPM; 0 = no per-model limit.
func (k Key) TPMFor(names []string) int {
	for _, n := range names {
		if tpm, ok := k.ModelTPM[n]; ok {
			return tpm
		}
	}
	return 0
}
