package charset

import "unicode/utf8"

// The UTF-16, UCS-2 and UTF-32 character sets need no table.

// appendUTF16 decodes UTF-16 (big-endian unless le). An unpaired surrogate or a
// trailing odd byte is invalid.
func appendUTF16(dst, src []byte, le bool) ([]byte, int) {
	bad := 0
	unit := func(i int) rune {
		if le {
			return rune(src[i]) | rune(src[i+1])<<8
		}
		return rune(src[i])<<8 | rune(src[i+1])
	}
	i := 0
	for ; i+1 < len(src); i += 2 {
		u := unit(i)
		switch {
		case u < 0xD800 || u > 0xDFFF:
			dst = utf8.AppendRune(dst, u)
		case u <= 0xDBFF && i+3 < len(src):
			if v := unit(i + 2); v >= 0xDC00 && v <= 0xDFFF {
				dst = utf8.AppendRune(dst, 0x10000+(u-0xD800)<<10+(v-0xDC00))
				i += 2
				continue
			}
			fallthrough
		default:
			dst = utf8.AppendRune(dst, utf8.RuneError)
			bad++
		}
	}
	if i < len(src) {
		dst = utf8.AppendRune(dst, utf8.RuneError)
		bad++
	}
	return dst, bad
}

// appendUCS2 decodes big-endian UCS-2: every unit is one BMP character. MySQL
// lets ucs2 hold the surrogate code units, which are no characters and have no
// UTF-8 form: they are invalid here.
func appendUCS2(dst, src []byte) ([]byte, int) {
	bad := 0
	i := 0
	for ; i+1 < len(src); i += 2 {
		u := rune(src[i])<<8 | rune(src[i+1])
		if u >= 0xD800 && u <= 0xDFFF {
			dst = utf8.AppendRune(dst, utf8.RuneError)
			bad++
			continue
		}
		dst = utf8.AppendRune(dst, u)
	}
	if i < len(src) {
		dst = utf8.AppendRune(dst, utf8.RuneError)
		bad++
	}
	return dst, bad
}

// appendUTF32 decodes big-endian UTF-32.
func appendUTF32(dst, src []byte) ([]byte, int) {
	bad := 0
	i := 0
	for ; i+3 < len(src); i += 4 {
		u := rune(src[i])<<24 | rune(src[i+1])<<16 | rune(src[i+2])<<8 | rune(src[i+3])
		if !utf8.ValidRune(u) {
			dst = utf8.AppendRune(dst, utf8.RuneError)
			bad++
			continue
		}
		dst = utf8.AppendRune(dst, u)
	}
	if i < len(src) {
		dst = utf8.AppendRune(dst, utf8.RuneError)
		bad++
	}
	return dst, bad
}
