package charset

import (
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// GB18030 (MySQL 8.0 only; MariaDB has no such character set) adds four-byte
// sequences b1 b2 b3 b4 (b1, b3 in 0x81..0xFE, b2, b4 in 0x30..0x39) to GBK's
// one and two bytes. They are numbered linearly: those from 0x81308130 to
// 0x8431A439 cover what two bytes leave of the BMP (through x/text's table),
// those from 0x90308130 on the supplementary planes, in order.
const (
	gb4BMPCount   = 39420
	gb4SuppOffset = 189000 // linear index of 0x90308130
)

func buildGB18030() *table {
	t := spec{enc: simplifiedchinese.GB18030, leads: lead81FE, trails: trailGBK}.build()
	dec := simplifiedchinese.GB18030.NewDecoder()
	t.gb4 = make([]rune, gb4BMPCount)
	for i := range t.gb4 {
		b4 := byte(0x30 + i%10)
		b3 := byte(0x81 + i/10%126)
		b2 := byte(0x30 + i/1260%10)
		b1 := byte(0x81 + i/12600)
		out, err := dec.Bytes([]byte{b1, b2, b3, b4})
		r, n := utf8.DecodeRune(out)
		if err != nil || n != len(out) || (r == utf8.RuneError && i != gb4FFFD) {
			r = unmapped
		}
		t.gb4[i] = r
	}
	return t
}

// gb4FFFD is the linear index of 0x8431A437, GB18030's code of U+FFFD.
const gb4FFFD = ((0x84-0x81)*10+(0x31-0x30))*1260 + (0xA4-0x81)*10 + (0x37 - 0x30)

func (t *table) appendGB18030(dst, src []byte) ([]byte, int) {
	bad := 0
	for i := 0; i < len(src); {
		b := src[i]
		if b < 0x80 {
			dst = append(dst, b)
			i++
			continue
		}
		if b >= 0x81 && b <= 0xFE && i+3 < len(src) && isDigit(src[i+1]) {
			b3, b4 := src[i+2], src[i+3]
			if b3 >= 0x81 && b3 <= 0xFE && isDigit(b4) {
				lin := ((int(b)-0x81)*10+int(src[i+1]-0x30))*1260 + (int(b3)-0x81)*10 + int(b4-0x30)
				r := unmapped
				switch {
				case lin < gb4BMPCount:
					r = t.gb4[lin]
				case lin >= gb4SuppOffset && lin-gb4SuppOffset <= 0xFFFFF:
					r = rune(0x10000 + lin - gb4SuppOffset)
				}
				dst, bad = appendEntry(dst, r, bad)
				i += 4
				continue
			}
		}
		if l := t.two[b]; l != nil && i+1 < len(src) {
			if r := l[src[i+1]]; r != invalid {
				dst, bad = appendEntry(dst, r, bad)
				i += 2
				continue
			}
		}
		dst, bad = appendEntry(dst, invalid, bad)
		i++
	}
	return dst, bad
}

func isDigit(b byte) bool { return b >= 0x30 && b <= 0x39 }
