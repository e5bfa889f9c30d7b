//! A global allocator that counts the allocations each thread makes, for tests that show a
//! path allocates nothing. A test binary installs it itself (a process has one global
//! allocator): `#[global_allocator] static ALLOCATOR: CountingAllocator = CountingAllocator;`.
#![allow(dead_code)]

/// Passes every call to the system allocator and counts allocations and reallocations.
pub struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the count is a const-
// initialised thread-local Cell, which never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        std::alloc::System.realloc(ptr, layout, new)
    }
}

/// Allocations (and reallocations) the calling thread has made so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}
