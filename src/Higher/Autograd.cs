using System.Runtime.CompilerServices;
using Higher.Tape;

namespace Higher;

/// <summary>
/// Reverse-mode differentiation over the tape. <c>Grad</c> returns gradients (with graphs of
/// their own when <c>createGraph</c> is true, so derivatives of any order compose);
/// <see cref="Backward"/> accumulates into the <see cref="Tensor.Grad"/> of leaves.
/// </summary>
public static class Autograd
{
    [ThreadStatic]
    private static int t_noGradDepth;

    /// <summary>True when ops on this thread are recorded on the tape.</summary>
    public static bool IsGradEnabled => t_noGradDepth == 0;

    /// <summary>
    /// Turns on anomaly detection for this flow (it follows awaits and tasks started inside) until the
    /// returned scope is disposed: the first NaN or infinity produced by a recorded forward op, a
    /// backward or an optimizer update throws <see cref="AnomalyException"/> naming the op and, for a
    /// backward, where its forward was called. See <see cref="AnomalyException"/>.
    /// </summary>
    public static AnomalyScope DetectAnomaly() => new();

    /// <summary>Disables recording on this thread until the returned scope is disposed. Scopes nest.</summary>
    public static GradModeScope NoGrad() => new(false);

    /// <summary>Re-enables recording on this thread (inside a <see cref="NoGrad"/> scope) until disposed.</summary>
    public static GradModeScope EnableGrad() => new(true);

    internal static void PushGradMode(bool enabled, out int previous)
    {
        previous = t_noGradDepth;
        t_noGradDepth = enabled ? 0 : previous + 1;
    }

    internal static void PopGradMode(int previous) => t_noGradDepth = previous;

    /// <summary>True when an op with these inputs must be recorded.</summary>
    internal static bool ShouldRecord(Tensor a) => t_noGradDepth == 0 && a.RequiresGrad;

    internal static bool ShouldRecord(Tensor a, Tensor b) => t_noGradDepth == 0 && (a.RequiresGrad || b.RequiresGrad);

    internal static bool ShouldRecord(ReadOnlySpan<Tensor> xs)
    {
        if (t_noGradDepth != 0)
        {
            return false;
        }
        foreach (var x in xs)
        {
            if (x.RequiresGrad)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Gradients of Σ ⟨outputs_i, gradOutputs_i⟩ with respect to <paramref name="inputs"/>.
    /// </summary>
    /// <param name="outputs">Tensors to differentiate. A one-element output may omit its gradient (1 is used).</param>
    /// <param name="inputs">Tensors to differentiate with respect to (leaves or not).</param>
    /// <param name="gradOutputs">Vectors for the vector-Jacobian products, one per output (null entries mean ones for scalars).</param>
    /// <param name="createGraph">Record the backward pass, so the returned gradients can be differentiated again.</param>
    /// <param name="allowUnused">Return null for an input the outputs do not depend on, instead of throwing.</param>
    /// <param name="retainGraph">Keep the graph for another backward; defaults to <paramref name="createGraph"/>.</param>
    public static Tensor?[] Grad(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor> inputs, IReadOnlyList<Tensor?>? gradOutputs = null,
        bool createGraph = false, bool allowUnused = false, bool? retainGraph = null)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(inputs);
        for (int i = 0; i < inputs.Count; i++)
        {
            if (!inputs[i].RequiresGrad)
            {
                throw new ArgumentException($"Input {i} ({inputs[i].Describe()}) does not require grad, so no gradient can be taken with respect to it.", nameof(inputs));
            }
        }
        for (int i = 0; i < outputs.Count; i++)
        {
            if (!outputs[i].RequiresGrad)
            {
                throw new InvalidOperationException($"Output {i} ({outputs[i].Describe()}) does not require grad and has no grad function, so nothing can be differentiated through it.");
            }
        }
        // Without createGraph the intermediate gradients are the engine's alone: they die with this scope.
        using var temporaries = createGraph ? null : TensorScope.BeginInternal("the backward pass of Autograd.Grad");
        var engine = new Engine(inputs);
        engine.Run(outputs, gradOutputs, createGraph, retainGraph ?? createGraph);
        var result = new Tensor?[inputs.Count];
        for (int i = 0; i < inputs.Count; i++)
        {
            result[i] = engine.InputGrad(i) is { } g ? temporaries?.Keep(g) ?? g : null;
            if (result[i] is null && !allowUnused)
            {
                throw new InvalidOperationException(
                    $"Input {i} ({inputs[i].Describe()}) was not used to compute the outputs. Pass allowUnused: true to get null for it.");
            }
        }
        return result;
    }

    /// <summary>Gradient of one output with respect to one input (see the list overload).</summary>
    public static Tensor Grad(Tensor output, Tensor input, Tensor? gradOutput = null, bool createGraph = false) =>
        Grad([output], [input], gradOutput is null ? null : [gradOutput], createGraph)[0]!;

    /// <summary>
    /// Gradients of one output with respect to any sequence of inputs, as
    /// <c>torch.autograd.grad(loss, model.parameters())</c>: one entry per input, in order
    /// (null for an unused input when <paramref name="allowUnused"/> is true).
    /// </summary>
    public static Tensor?[] Grad(Tensor output, IEnumerable<Tensor> inputs, Tensor? gradOutput = null, bool createGraph = false,
        bool allowUnused = false, bool? retainGraph = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(inputs);
        return Grad([output], inputs as IReadOnlyList<Tensor> ?? [.. inputs], gradOutput is null ? null : [gradOutput], createGraph, allowUnused, retainGraph);
    }

    /// <summary>
    /// Accumulates d(Σ ⟨outputs_i, gradOutputs_i⟩)/d(leaf) into <see cref="Tensor.Grad"/> of every leaf
    /// that requires grad and that the outputs depend on: in place into a Grad this method made and
    /// no one has read or assigned since, else as a new tensor (see <see cref="Tensor.Grad"/>).
    /// </summary>
    public static void Backward(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor?>? gradOutputs = null, bool createGraph = false, bool? retainGraph = null)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        foreach (var o in outputs)
        {
            if (!o.RequiresGrad)
            {
                throw new InvalidOperationException($"Backward of a {o.Describe()} tensor that does not require grad and has no grad function.");
            }
        }
        // Without createGraph the intermediate gradients are the engine's alone: they die with this scope
        // (the leaves' new Grad survive it, as gradients of tensors that outlive it).
        using var temporaries = createGraph ? null : TensorScope.BeginInternal("the backward pass of Autograd.Backward");
        var engine = new Engine(null);
        engine.Run(outputs, gradOutputs, createGraph, retainGraph ?? createGraph);
        using var scope = createGraph ? default : NoGrad();
        for (int i = 0; i < engine.LeafCount; i++)
        {
            var (leaf, g, exclusive) = engine.LeafGrad(i);
            // Backward passes on several threads (a meta-batch split across threads or devices) may
            // accumulate into the same leaf: the read-add-write is serialized per leaf.
            lock (GradLocks[(RuntimeHelpers.GetHashCode(leaf) & int.MaxValue) % GradLocks.Length])
            {
                if (createGraph)
                {
                    leaf.Grad = leaf.PeekGrad is { } sum ? sum + g : g;
                    continue;
                }
                var grad = g.Detach();
                var prev = leaf.PeekGrad;
                if (prev is not null && leaf.GradAccumulates && !prev.IsReleased && prev.DType == grad.DType && prev.Device == grad.Device)
                {
                    // PyTorch's AccumulateGrad without create_graph: the sum goes into the Grad this
                    // method made earlier (no allocation; whoever holds that tensor sees the new values).
                    prev.Backend.Binary(BinaryOp.Add, prev.Storage, prev.Shape, grad.Storage, grad.Shape, prev.Storage, prev.Shape);
                    prev.Version.Value++;
                    continue;
                }
                // The first gradient becomes the accumulator when the pass alone holds it; a sum made
                // here is this method's own as well.
                bool owned = prev is not null || exclusive;
                leaf.Grad = prev is null ? grad : prev + grad;
                leaf.GradAccumulates = owned;
            }
        }
    }

    private static readonly Lock[] GradLocks = CreateLocks(64);

    private static Lock[] CreateLocks(int count)
    {
        var locks = new Lock[count];
        for (int i = 0; i < count; i++)
        {
            locks[i] = new Lock();
        }
        return locks;
    }
}

/// <summary>Restores the previous grad mode when disposed.</summary>
public readonly struct GradModeScope : IDisposable
{
    private readonly int _previous;
    private readonly bool _active;

    internal GradModeScope(bool enabled)
    {
        Autograd.PushGradMode(enabled, out _previous);
        _active = true;
    }

    /// <summary>Restores the grad mode that was in force when the scope was created.</summary>
    public void Dispose()
    {
        if (_active)
        {
            Autograd.PopGradMode(_previous);
        }
    }
}
