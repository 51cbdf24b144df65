package config

import (
	"errors"
	"fmt"
	"strings"
)

// TritonRestricted is --triton-restricted-key split into Triton's key and
// value; both "" when it is unset. Call it after Validate.
func (c *Config) TritonRestricted() (key, value string) {
	key, value, _ = splitRestrictedKey(c.TritonRestrictedKey)
	return key, value
}

// splitRestrictedKey reads KEY=VALUE as Triton reads the part after the
// protocols in --grpc-restricted-protocol=<protocols>:<key>=<value>: the
// key up to the first "=", the value after it (server r25.06,
// src/command_line_parser.cc, ParseRestrictedFeatureOption). The key goes
// out as a gRPC metadata name, which gRPC lowercases and Triton compares
// as given, so only [0-9a-z._-] can ever match; the value must be
// printable ASCII to be sent at all. "" is no key.
func splitRestrictedKey(s string) (key, value string, err error) {
	if s == "" {
		return "", "", nil
	}
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" || value == "" {
		return "", "", errors.New("want KEY=VALUE, the part after the protocols of Triton's --grpc-restricted-protocol=model-repository,shared-memory:KEY=VALUE")
	}
	for _, r := range key {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '.' && r != '_' && r != '-' {
			return "", "", fmt.Errorf("key %q: use only lowercase letters, digits, '.', '_' and '-' (gRPC lowercases metadata names, so Triton's key must be lowercase too)", key)
		}
	}
	for _, r := range value {
		if r <= ' ' || r > '~' {
			return "", "", errors.New("the value must be printable ASCII without spaces (e.g. openssl rand -hex 16)")
		}
	}
	return key, value, nil
}
