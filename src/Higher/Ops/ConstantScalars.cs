using Higher.Reference;

namespace Higher;

/// <summary>
/// Read-only 0-d operands shared by the ops of one thread: the 0 of every <c>Where(mask, g, 0)</c> (clamp's
/// backward, a where's), the c of <c>x &gt; c</c> and <c>x / c</c>. Making a fresh scalar tensor for
/// each costs an allocation, a fill and a scope entry (about as much as the small op it feeds); a
/// constant is made once per thread, backend, dtype and value and reused.
/// <para>
/// A constant is never handed to the caller as a result, only read as an operand (and saved by tape
/// nodes, which only read it), so nothing writes it. It belongs to no <see cref="TensorScope"/> and no
/// backward pass (its family is made directly, not adopted), so neither ever releases it; on a host
/// backend its storage wraps a plain array outside the buffer pool, so it does not show in the pool's
/// bytes in use. Only <see cref="ReferenceBackend"/> storages are cached (itself or behind a
/// <see cref="CheckedBackend"/>; other backends get a fresh scalar, as before): a device constant would
/// pin device memory per thread.
/// </para>
/// </summary>
internal static class ConstantScalars
{
    private const int Slots = 16;

    [ThreadStatic]
    private static Entry[]? t_entries;

    [ThreadStatic]
    private static int t_next;

    /// <summary>The thread's constant <paramref name="value"/> of <paramref name="dtype"/> on <paramref name="backend"/>, or null where none is cached (then make a fresh scalar).</summary>
    public static Tensor? Get(IBackend backend, DType dtype, double value)
    {
        if (dtype is not (DType.Float32 or DType.Float64) || (backend is not ReferenceBackend && backend is not CheckedBackend { Inner: ReferenceBackend }))
        {
            return null;
        }
        long bits = BitConverter.DoubleToInt64Bits(value);
        var entries = t_entries ??= new Entry[Slots];
        for (int i = 0; i < entries.Length; i++)
        {
            ref var e = ref entries[i];
            if (e.Tensor is not null && e.Bits == bits && e.DType == dtype && ReferenceEquals(e.Backend, backend))
            {
                return e.Tensor;
            }
        }
        IStorage storage = dtype == DType.Float32 ? CpuStorage.Wrap([(float)value]) : CpuStorage.Wrap([value]);
        // The family is made here, not adopted: no scope governs the constant and no backward pass captures it.
        var tensor = new Tensor(storage, Shape.Scalar, backend, version: new VersionCounter { Storage = storage });
        int slot = t_next;
        t_next = (slot + 1) % Slots;
        entries[slot] = new Entry(backend, dtype, bits, tensor);
        return tensor;
    }

    private readonly record struct Entry(IBackend Backend, DType DType, long Bits, Tensor Tensor);
}
