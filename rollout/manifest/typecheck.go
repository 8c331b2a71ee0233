package manifest

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// typeProblem is a value that does not fit the Go type it decodes into.
type typeProblem struct {
	path   string
	line   int
	reason string
}

// typeCheck walks a value tree alongside the Go type it will be decoded
// into, the way encoding/json would, and reports every unknown field, type
// mismatch and rejected value with its exact path. encoding/json stops at
// the first type error and names it without list indexes, and errors from
// UnmarshalJSON methods (durations, quantities) carry no path at all; this
// gives each its own line.
func typeCheck(v *value, t reflect.Type) []typeProblem {
	var c typeChecker
	c.check(v, t, "", v.line)
	return c.problems
}

type typeChecker struct {
	problems []typeProblem
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (c *typeChecker) add(path string, line int, format string, args ...any) {
	c.problems = append(c.problems, typeProblem{path: path, line: line, reason: fmt.Sprintf(format, args...)})
}

func (c *typeChecker) mismatch(v *value, path string, line int, want string) {
	got := v.kind.String()
	switch v.kind {
	case kindString:
		got += " " + strconv.Quote(truncate(v.scalar))
	case kindNumber, kindBool:
		got += " " + v.scalar
	}
	hint := ""
	switch {
	case want == "string" && (v.kind == kindNumber || v.kind == kindBool):
		hint = "; quote it to make it a string"
	case want == "boolean" && v.kind == kindString && yaml11Bools[strings.ToLower(v.scalar)]:
		// YAML 1.1 read yes/no/on/off as booleans; YAML 1.2 and Kubernetes
		// do not.
		hint = "; write true or false"
	case want == "integer" || want == "number":
		if v.kind == kindString {
			if _, err := strconv.ParseFloat(v.scalar, 64); err == nil {
				hint = "; remove the quotes"
			}
		}
	}
	c.add(path, line, "Invalid type: expected %s, got %s%s", want, got, hint)
}

var yaml11Bools = map[string]bool{"yes": true, "no": true, "on": true, "off": true, "y": true, "n": true}

// check checks v against t. line is where to report a problem with v
// itself: the key's line for an object member, the item's for a list item.
func (c *typeChecker) check(v *value, t reflect.Type, path string, line int) {
	// null leaves any Go value as it is, as in encoding/json.
	if v.kind == kindNull {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		raw := v.marshal()
		u := reflect.New(t).Interface().(json.Unmarshaler)
		if err := u.UnmarshalJSON(raw); err != nil {
			c.add(path, line, "Invalid value: %s: %v", truncate(string(raw)), err)
		}
		return
	}
	if v.kind == kindString && reflect.PointerTo(t).Implements(textUnmarshalerType) {
		u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText([]byte(v.scalar)); err != nil {
			c.add(path, line, "Invalid value: %s: %v", strconv.Quote(truncate(v.scalar)), err)
		}
		return
	}

	switch t.Kind() {
	case reflect.Struct:
		if v.kind != kindObject {
			c.mismatch(v, path, line, "object")
			return
		}
		fields := structFields(t)
		for _, m := range v.members {
			child := joinPath(path, m.key)
			f, ok := fields[m.key]
			if !ok {
				c.add(child, m.keyLine, "unknown field %q", m.key)
				continue
			}
			c.check(m.val, f, child, m.keyLine)
		}
	case reflect.Map:
		if v.kind != kindObject {
			c.mismatch(v, path, line, "object")
			return
		}
		for _, m := range v.members {
			c.check(m.val, t.Elem(), path+"["+m.key+"]", m.keyLine)
		}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			if v.kind != kindString {
				c.mismatch(v, path, line, "base64 string")
			} else if _, err := base64.StdEncoding.DecodeString(v.scalar); err != nil {
				c.add(path, line, "Invalid value: %s: must be base64: %v", strconv.Quote(truncate(v.scalar)), err)
			}
			return
		}
		if v.kind != kindArray {
			c.mismatch(v, path, line, "list")
			return
		}
		for i, it := range v.items {
			c.check(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i), it.line)
		}
	case reflect.String:
		if v.kind != kindString {
			c.mismatch(v, path, line, "string")
		}
	case reflect.Bool:
		if v.kind != kindBool {
			c.mismatch(v, path, line, "boolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.kind != kindNumber {
			c.mismatch(v, path, line, "integer")
		} else if _, err := strconv.ParseInt(v.scalar, 10, t.Bits()); err != nil {
			c.add(path, line, "Invalid value: %s: %s", v.scalar, integerProblem(v.scalar, t.Bits()))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.kind != kindNumber {
			c.mismatch(v, path, line, "integer")
		} else if _, err := strconv.ParseUint(v.scalar, 10, t.Bits()); err != nil {
			msg := integerProblem(v.scalar, t.Bits())
			if strings.HasPrefix(v.scalar, "-") {
				msg = "must not be negative"
			}
			c.add(path, line, "Invalid value: %s: %s", v.scalar, msg)
		}
	case reflect.Float32, reflect.Float64:
		if v.kind != kindNumber {
			c.mismatch(v, path, line, "number")
		} else if _, err := strconv.ParseFloat(v.scalar, t.Bits()); err != nil {
			c.add(path, line, "Invalid value: %s: out of range", v.scalar)
		}
	}
	// Interfaces take any value; other kinds do not occur in API types.
}

func integerProblem(num string, bits int) string {
	if strings.ContainsAny(num, ".eE") {
		return "must be a whole number"
	}
	return fmt.Sprintf("out of range for a %d-bit integer", bits)
}

func truncate(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// structFields returns the JSON names of t's fields and their types, with
// embedded structs promoted, as encoding/json sees them. Names match case
// sensitively, as in Kubernetes' decoder.
func structFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	depthOf := map[string]int{}
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					walk(et, depth+1)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			// The shallowest field wins, as in Go's own promotion.
			if d, ok := depthOf[name]; ok && d <= depth {
				continue
			}
			depthOf[name] = depth
			fields[name] = ft
		}
	}
	walk(t, 0)
	fieldCache.Store(t, fields)
	return fields
}
