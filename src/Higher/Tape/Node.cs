namespace Higher.Tape;

/// <summary>
/// One recorded op on the tape. Its backward is written in differentiable <see cref="Tensor"/> ops
/// only, so running it with grad mode on records the gradient's own graph: higher derivatives
/// come by construction.
/// </summary>
internal abstract class Node
{
    private Tensor[]? _saved;
    private int[]? _savedVersions;
    private bool _released;

    protected Node(params Tensor[] inputs) => Inputs = inputs;

    /// <summary>Inputs of the op, in order; gradients are returned in the same order.</summary>
    internal Tensor[] Inputs { get; private set; }

    /// <summary>Op name for messages and <see cref="Tensor.GradFnName"/>.</summary>
    internal abstract string Name { get; }

    /// <summary>True if input <paramref name="i"/> needs a gradient.</summary>
    protected bool NeedsGrad(int i) => Inputs[i].RequiresGrad;

    /// <summary>Records tensors the backward reads, with their versions, so an in-place change is caught.</summary>
    protected void Save(params Tensor[] tensors)
    {
        _saved = tensors;
        _savedVersions = new int[tensors.Length];
        for (int i = 0; i < tensors.Length; i++)
        {
            _savedVersions[i] = tensors[i].Version.Value;
        }
    }

    /// <summary>Gradients of the op's inputs given the gradient of its output (null where none is needed).</summary>
    protected abstract Tensor?[] Backward(Tensor gradOutput);

    internal Tensor?[] Apply(Tensor gradOutput)
    {
        if (_released)
        {
            throw new InvalidOperationException(
                $"Trying to backward through {Name} a second time, after its saved tensors were freed. Pass retainGraph: true (or createGraph: true) to the first backward.");
        }
        if (_saved is not null)
        {
            for (int i = 0; i < _saved.Length; i++)
            {
                if (_saved[i].Version.Value != _savedVersions![i])
                {
                    throw new InvalidOperationException(
                        $"A {_saved[i].Describe()} tensor needed by {Name} for its gradient was modified by an in-place operation (version {_saved[i].Version.Value}, saved at version {_savedVersions[i]}).");
                }
            }
        }
        return Backward(gradOutput);
    }

    /// <summary>Frees what the backward needed, so the graph can be collected; a later backward fails clearly.</summary>
    internal void Release()
    {
        _released = true;
        _saved = null;
        OnRelease();
    }

    /// <summary>Drops op-specific saved state.</summary>
    protected virtual void OnRelease()
    {
    }
}
