namespace Higher;

/// <summary>
/// A storage whose elements live in host memory and can be read in place, without a copy or a
/// device round-trip. The engine uses it for checks that are free on the host (index bounds before
/// an index kernel runs); storages of other devices do not implement it, and there the checks are
/// the kernels' and Higher's CheckedBackend's.
/// </summary>
public interface IHostStorage : IStorage
{
    /// <summary>The elements as a read-only span of <typeparamref name="T"/>, which must match <see cref="IStorage.DType"/>.</summary>
    ReadOnlySpan<T> Read<T>() where T : unmanaged;
}
