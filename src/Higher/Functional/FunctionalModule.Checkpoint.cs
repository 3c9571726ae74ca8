using Higher.Nn;

namespace Higher.Functional;

/// <summary>The hooks a checkpointed unroll uses to save and restore a view's buffers at segment boundaries.</summary>
public sealed partial class FunctionalModule
{
    /// <summary>The buffer tensors now (training layers replace them, never mutate them, so references suffice).</summary>
    internal Dictionary<ModuleBuffer, Tensor?> SnapshotBuffers() => new(_buffers, ReferenceEqualityComparer.Instance);

    /// <summary>Makes <paramref name="snapshot"/>'s tensors the buffers again.</summary>
    internal void RestoreBuffers(Dictionary<ModuleBuffer, Tensor?> snapshot)
    {
        foreach (var (buffer, value) in snapshot)
        {
            _buffers[buffer] = value;
        }
    }
}
