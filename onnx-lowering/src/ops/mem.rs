//! Little-endian reads of the memory image, for the native kernels.

#[inline]
pub fn read_i8(mem: &[u8], at: usize) -> i8 {
    mem[at] as i8
}

#[inline]
pub fn read_i32(mem: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([mem[at], mem[at + 1], mem[at + 2], mem[at + 3]])
}

#[inline]
pub fn write_i32(mem: &mut [u8], at: usize, v: i32) {
    mem[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
