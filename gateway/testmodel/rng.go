package testmodel

import "math"

// rng draws N(mean, std) values from splitmix64 + Box-Muller in float64,
// rounded to float32. The recipe is simple enough to re-implement in any
// language, should an oracle ever need to regenerate weights instead of
// reading them from the model file.
type rng struct {
	state uint64
	spare float64
	has   bool
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// uniform returns a value in (0, 1]: never 0, so the log below is finite.
func (r *rng) uniform() float64 {
	return float64(r.next()>>11+1) / (1 << 53)
}

// normal returns a standard normal value; each Box-Muller pair yields two.
func (r *rng) normal() float64 {
	if r.has {
		r.has = false
		return r.spare
	}
	u1, u2 := r.uniform(), r.uniform()
	rad := math.Sqrt(-2 * math.Log(u1))
	r.spare, r.has = rad*math.Sin(2*math.Pi*u2), true
	return rad * math.Cos(2*math.Pi*u2)
}

func (r *rng) fill(n int, mean, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + std*r.normal())
	}
	return v
}
