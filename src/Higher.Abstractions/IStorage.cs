namespace Higher;

/// <summary>
/// An opaque, contiguous device buffer owned by one backend. Tensors view storages; backends
/// read and write them only through <see cref="IBackend"/> kernels.
/// </summary>
public interface IStorage : IDisposable
{
    /// <summary>Element type.</summary>
    DType DType { get; }

    /// <summary>Number of elements.</summary>
    long Length { get; }

    /// <summary>Device the buffer lives on.</summary>
    Device Device { get; }
}
