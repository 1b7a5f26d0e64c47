package config

import (
	"path/filepath"
	"reflect"
	"strings"
)

// IsPathKey reports whether a configuration key holds a file system path
// (or a list of them): state_dir, a file notifier's path, source.files'
// paths, and every key ending in _file or _dir. Such values are relative to the configuration file, so that every
// command given the same --config, from any directory, uses the same
// files as the running service.
func IsPathKey(key string) bool {
	return key == "path" || key == "paths" || key == "state_dir" || strings.HasSuffix(key, "_file") || strings.HasSuffix(key, "_dir")
}

// resolve returns path p of the configuration resolved against the
// configuration file's directory. Empty, absolute, "-" (standard output)
// and URL values stay as they are.
func (c *Config) resolve(p string) string {
	if p == "" || p == "-" || filepath.IsAbs(p) || strings.Contains(p, "://") {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// resolvePaths resolves every path key of the configuration, its
// notifiers' and its source's included, against the file's directory.
func (c *Config) resolvePaths() {
	c.resolveIn(reflect.ValueOf(c).Elem())
}

func (c *Config) resolveIn(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			c.resolveIn(v.Elem())
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			c.resolveIn(v.Index(i))
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Name == "File" {
				continue
			}
			fv := v.Field(i)
			if IsPathKey(yamlName(f)) && fv.CanSet() {
				switch {
				case fv.Kind() == reflect.String:
					fv.SetString(c.resolve(fv.String()))
					continue
				case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
					for j := 0; j < fv.Len(); j++ {
						fv.Index(j).SetString(c.resolve(fv.Index(j).String()))
					}
					continue
				}
			}
			c.resolveIn(fv)
		}
	}
}
