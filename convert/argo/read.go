package argo

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxFileSize bounds one input file; Argo manifests are far smaller.
const MaxFileSize = 4 << 20

// ReadPaths reads the input of Convert: each path is a file, or a
// directory whose .yaml, .yml and .json files are read, hidden files and
// folders skipped. A File's Path is the path as found (the directory as
// given, joined with the file's); its Rel is where an output directory
// puts it: the path below the directory, or a file's base name.
func ReadPaths(paths []string) ([]File, error) {
	var out []File
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			f, err := readFile(root, filepath.Base(root))
			if err != nil {
				return nil, err
			}
			out = append(out, f)
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !d.Type().IsRegular() {
				return nil
			}
			switch strings.ToLower(filepath.Ext(p)) {
			case ".yaml", ".yml", ".json":
			default:
				return nil
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			f, err := readFile(p, rel)
			if err != nil {
				return err
			}
			out = append(out, f)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readFile(path, rel string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return File{}, err
	}
	if len(data) > MaxFileSize {
		return File{}, fmt.Errorf("%s: larger than %d MiB", path, MaxFileSize>>20)
	}
	return File{Path: path, Rel: filepath.ToSlash(rel), Data: data}, nil
}
