namespace Higher.Cuda;

/// <summary>
/// Deterministic release of a region's device memory: every storage its allocator hands out on the
/// beginning thread while the scope is the innermost one is disposed (its block returned to the
/// cache) when the scope is disposed, except the storages passed to <see cref="Keep{T}"/>.
/// <code>
/// using (var scope = cuda.AllocationScope())
/// {
///     var loss = Step(model, batch);      // intermediates of the step are allocated in the scope
///     scope.Keep(loss.Storage);           // the result outlives it
///     return loss;
/// }
/// </code>
/// A kept storage moves to the enclosing scope of the same allocator, if there is one (so an
/// outer scope still governs it), else it is left to the caller and its finalizer. Using a storage
/// after its scope disposed it throws <see cref="ObjectDisposedException"/>, so a forgotten
/// <see cref="Keep{T}"/> fails loudly, never reads reused memory.
/// </summary>
public sealed class CudaAllocationScope : IDisposable
{
    private readonly HashSet<CudaStorage> _owned = [];
    private bool _disposed;

    internal CudaAllocationScope(CudaAllocator allocator, CudaAllocationScope? outer)
    {
        Allocator = allocator;
        Outer = outer;
    }

    /// <summary>Number of storages the scope will dispose.</summary>
    public int Count => _owned.Count;

    internal CudaAllocator Allocator { get; }

    internal CudaAllocationScope? Outer { get; }

    /// <summary>
    /// Excludes <paramref name="storage"/> from this scope (moving it to the enclosing scope of the
    /// same allocator, if any) and returns it. Storages of other allocators or devices are returned unchanged.
    /// </summary>
    public T Keep<T>(T storage) where T : IStorage
    {
        ArgumentNullException.ThrowIfNull(storage);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (storage is CudaStorage cuda && _owned.Remove(cuda))
        {
            for (var outer = Outer; outer is not null; outer = outer.Outer)
            {
                if (outer.Allocator == Allocator)
                {
                    outer.Track(cuda);
                    break;
                }
            }
        }
        return storage;
    }

    /// <summary>Disposes every storage of the scope that was not kept.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        CudaAllocator.EndScope(this);
        _disposed = true;
        foreach (var storage in _owned)
        {
            storage.Dispose();
        }
        _owned.Clear();
    }

    internal void Track(CudaStorage storage) => _owned.Add(storage);
}
